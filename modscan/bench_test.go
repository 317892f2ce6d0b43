package modscan

import (
	"bytes"
	"testing"
)

func BenchmarkLayoutModule(b *testing.B) {
	raw := sampleModule("bench").build()
	cfg := DefaultLayoutConfig()
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := LayoutModule(raw, "bench.ko", cfg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkReadDebianDataset(b *testing.B) {
	b.SetBytes(int64(len(debianModulesJSON)))
	for b.Loop() {
		if _, err := ReadModuleDataset(bytes.NewReader(debianModulesJSON)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadOrderAll(b *testing.B) {
	d, err := DebianModules()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		lo := d.AllInDependencyOrder(true)
		if len(lo.Order) != len(d.Modules) {
			b.Fatal(len(lo.Order))
		}
	}
	b.ReportMetric(float64(len(d.Modules))*float64(b.N)/b.Elapsed().Seconds(), "modules/s")
}

func BenchmarkServerModuleSet(b *testing.B) {
	for b.Loop() {
		if _, err := ServerModuleSet(); err != nil {
			b.Fatal(err)
		}
	}
}
