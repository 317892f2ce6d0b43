package analysis

import (
	"bytes"
	"errors"
	"image/png"
	"strings"
	"testing"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/internal/dumptest"
)

// TestHeatmapMode3: one pixel per 2M block of the 12G linear map, each
// coloured by the smallest leaf of its block as a page-by-block lookup says.
func TestHeatmapMode3(t *testing.T) {
	d := parseFile(t, "../testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt", ptdump.ParseOptions{})
	var buf bytes.Buffer
	info, err := WriteHeatmapPNG(&buf, d, HeatmapOptions{Width: 256})
	if err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&buf)
	if err != nil {
		t.Fatal(err)
	}
	const blocks = 12 << 30 / (2 << 20)
	if info.PixelBytes != 2<<20 || info.Rows != blocks/256 || info.Skipped != 0 || info.Base != 0xffff000000000000 {
		t.Fatalf("info %+v", info)
	}
	if img.Bounds().Dx() != 256 || img.Bounds().Dy() <= info.Rows {
		t.Fatalf("bounds %v", img.Bounds())
	}
	o := pageOracle{d}
	for b := uint64(0); b < blocks; b++ {
		// The smallest leaf in the block: look at every 4K page.
		want := heatNone
		for a := info.Base + b<<21; a < info.Base+(b+1)<<21; a += 4096 {
			if r := o.at(a); r != nil {
				want = max(want, heatClass(&d.Geometry, r))
			}
		}
		got := img.At(int(b%256), int(b/256))
		r, g, bl, _ := got.RGBA()
		c := heatColors[want]
		if uint8(r>>8) != c.R || uint8(g>>8) != c.G || uint8(bl>>8) != c.B {
			t.Fatalf("block %d: colour %v, want class %d %v", b, got, want, c)
		}
	}
}

func TestHeatmapSparseAndScaled(t *testing.T) {
	cols := dumptest.Cols{SHD: true, AF: true, Blk: true, UXN: true, Mem: "MEM/NORMAL-TAGGED"}.Text()
	base := uint64(0xffff000000000000)
	text := "---[ Linear Mapping start ]---\n" +
		dumptest.Line(base, base+1<<30, "PUD", cols) + "\n" +
		dumptest.Line(base+100<<40, base+164<<40, "PUD", cols) + "\n" +
		"---[ Linear Mapping end ]---\n"
	d, err := parseString(text, ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	img, info, err := Heatmap(d, HeatmapOptions{Width: 64, MaxRows: 100})
	if err != nil {
		t.Fatal(err)
	}
	// 64T at 2M per pixel and 64 pixels per row is 512K rows: the pixel
	// must have grown until the map fits in 100 rows.
	if info.PixelBytes <= 2<<20 || info.Rows > 100 || info.Skipped != 1 {
		t.Fatalf("info %+v", info)
	}
	if info.PixelBytes&(info.PixelBytes-1) != 0 {
		t.Errorf("pixel size %#x not a power of two", info.PixelBytes)
	}
	r, g, b, _ := img.At(0, 0).RGBA()
	if c := heatColors[heatHuge]; uint8(r>>8) != c.R || uint8(g>>8) != c.G || uint8(b>>8) != c.B {
		t.Errorf("first pixel %v", img.At(0, 0))
	}
}

func TestHeatmapNoLinearMap(t *testing.T) {
	d, err := parseString("---[ vmalloc() area ]---\n"+dumptest.Line(0xffff800080000000, 0xffff800080001000, "PTE", " RW NX SHD AF UXN MEM/NORMAL")+"\n", ptdump.ParseOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := Heatmap(d, HeatmapOptions{}); !errors.Is(err, ErrNoLinearMap) || !strings.Contains(err.Error(), "test") {
		t.Errorf("err %v", err)
	}
}
