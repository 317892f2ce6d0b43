package fleet

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/parquet-go/parquet-go"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/analysis"
)

// KindDumpStats is the kind of "ptlab dump stats --shard" results.
const KindDumpStats = "dump-stats"

// DumpRow is one dump's headline statistics, flat so that data engines
// (DuckDB, Spark, pandas) read it as one table row. Byte counts are of
// mapped (valid or present-invalid) ranges; "linear_" columns are the linear
// map only; collapse columns are what folding PTE tables back into PMD
// blocks would recover. A dump that could not be read or parsed has Error
// set and zeros elsewhere.
type DumpRow struct {
	Record   string `json:"record" parquet:"record"` // "dump"
	Index    int64  `json:"index" parquet:"index"`   // position in the whole input list
	Path     string `json:"path" parquet:"path"`
	SHA256   string `json:"sha256" parquet:"sha256"` // of the file's bytes
	Error    string `json:"error" parquet:"error"`
	Warnings int64  `json:"warnings" parquet:"warnings"`

	Arch     string `json:"arch" parquet:"arch"`
	PageSize int64  `json:"page_size" parquet:"page_size"`
	VABits   int64  `json:"va_bits" parquet:"va_bits"`
	Geometry string `json:"geometry" parquet:"geometry"`
	Ranges   int64  `json:"ranges" parquet:"ranges"`

	MappedBytes    int64 `json:"mapped_bytes" parquet:"mapped_bytes"`
	PUDBytes       int64 `json:"pud_bytes" parquet:"pud_bytes"`
	ContPMDBytes   int64 `json:"cont_pmd_bytes" parquet:"cont_pmd_bytes"`
	PMDBytes       int64 `json:"pmd_bytes" parquet:"pmd_bytes"`
	ContPTEBytes   int64 `json:"cont_pte_bytes" parquet:"cont_pte_bytes"`
	PTEBytes       int64 `json:"pte_bytes" parquet:"pte_bytes"`
	OtherLeafBytes int64 `json:"other_leaf_bytes" parquet:"other_leaf_bytes"`
	TablePages     int64 `json:"table_pages" parquet:"table_pages"`
	TableBytes     int64 `json:"table_bytes" parquet:"table_bytes"`

	LinearMappedBytes      int64   `json:"linear_mapped_bytes" parquet:"linear_mapped_bytes"`
	LinearPTEBytes         int64   `json:"linear_pte_bytes" parquet:"linear_pte_bytes"`
	LinearContPTEBytes     int64   `json:"linear_cont_pte_bytes" parquet:"linear_cont_pte_bytes"`
	LinearBasePageFraction float64 `json:"linear_base_page_fraction" parquet:"linear_base_page_fraction"`
	LinearTablePages       int64   `json:"linear_table_pages" parquet:"linear_table_pages"`

	CollapseBlocks          int64 `json:"collapse_blocks" parquet:"collapse_blocks"`
	CollapseBytes           int64 `json:"collapse_bytes" parquet:"collapse_bytes"`
	CollapseTablePagesSaved int64 `json:"collapse_table_pages_saved" parquet:"collapse_table_pages_saved"`
	CollapseTLBBefore       int64 `json:"collapse_tlb_entries_before" parquet:"collapse_tlb_entries_before"`
	CollapseTLBAfter        int64 `json:"collapse_tlb_entries_after" parquet:"collapse_tlb_entries_after"`
}

// DumpOptions are the parse settings of a dump-stats run (they change rows,
// so they are part of the envelope).
type DumpOptions struct {
	Lenient  bool
	PageSize uint64 // 0: infer
	Jobs     int    // dumps analysed at once; < 1: GOMAXPROCS
}

func (o DumpOptions) envelope() map[string]string {
	return map[string]string{"lenient": fmt.Sprint(o.Lenient), "page_size": fmt.Sprint(o.PageSize)}
}

// DumpStats analyses shard s of the input list: one row per dump of the
// shard's range, in input order, and the envelope naming the whole list.
func DumpStats(inputs []string, s Shard, opt DumpOptions) (*Result, error) {
	env := NewEnvelope(KindDumpStats, s, HashInputs(inputs), opt.envelope())
	lo, hi := env.Range[0], env.Range[1]
	rows := make([]DumpRow, hi-lo)
	jobs := opt.Jobs
	if jobs < 1 {
		jobs = runtime.GOMAXPROCS(0)
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(jobs, max(1, hi-lo)) {
		wg.Go(func() {
			for i := range next {
				rows[i-lo] = dumpRow(i, inputs[i], opt)
			}
		})
	}
	for i := lo; i < hi; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	r := &Result{Name: fmt.Sprintf("shard %s", s), Envelope: env}
	for i := range rows {
		b, err := json.Marshal(&rows[i])
		if err != nil {
			return nil, err
		}
		r.Rows = append(r.Rows, b)
	}
	r.Envelope.Rows = len(r.Rows)
	return r, nil
}

// dumpRow reads, parses and summarises one dump.
func dumpRow(i int, path string, opt DumpOptions) DumpRow {
	row := DumpRow{Record: "dump", Index: int64(i), Path: path}
	data, err := os.ReadFile(path)
	if err != nil {
		row.Error = err.Error()
		return row
	}
	sum := sha256.Sum256(data)
	row.SHA256 = hex.EncodeToString(sum[:])
	d, err := ptdump.Parse(bytes.NewReader(data), path, ptdump.ParseOptions{Lenient: opt.Lenient, PageSize: opt.PageSize})
	if err != nil {
		row.Error = err.Error()
		return row
	}
	st := analysis.Stats(d)
	row.Warnings = int64(len(d.Warnings))
	row.Arch, row.PageSize, row.VABits, row.Geometry, row.Ranges = string(st.Arch), int64(st.PageSize), int64(st.VABits), st.Geometry, int64(st.Ranges)
	t := &st.Total
	row.MappedBytes = int64(t.ValidBytes + t.InvalidBytes)
	for _, l := range t.Leaves {
		b := int64(l.Bytes)
		switch lv := strings.ToUpper(l.Level); {
		case lv == "PUD" && !l.Cont:
			row.PUDBytes += b
		case lv == "PMD" && l.Cont:
			row.ContPMDBytes += b
		case lv == "PMD":
			row.PMDBytes += b
		case lv == "PTE" && l.Cont:
			row.ContPTEBytes += b
		case lv == "PTE":
			row.PTEBytes += b
		default:
			row.OtherLeafBytes += b
		}
	}
	row.TablePages, row.TableBytes = int64(t.TablePages), int64(t.TableBytes)
	if lm := st.LinearMap; lm != nil {
		row.LinearMappedBytes, row.LinearPTEBytes, row.LinearContPTEBytes = int64(lm.MappedBytes), int64(lm.PTEBytes), int64(lm.ContPTEBytes)
		row.LinearBasePageFraction, row.LinearTablePages = lm.BasePageFraction, int64(lm.TablePages)
	}
	c := t.Collapse
	row.CollapseBlocks, row.CollapseBytes, row.CollapseTablePagesSaved = int64(c.Blocks), int64(c.Bytes), int64(c.TablePagesSaved)
	row.CollapseTLBBefore, row.CollapseTLBAfter = int64(c.TLBEntriesBefore), int64(c.TLBEntriesAfter)
	return row
}

// WriteParquet writes a dump-stats result as Parquet: the rows as DumpRow
// columns, the envelope as key-value metadata under EnvelopeKey.
func WriteParquet(w io.Writer, r *Result) error {
	if r.Envelope.Kind != KindDumpStats {
		return fmt.Errorf("%w: Parquet holds %s results, not %s", ErrResult, KindDumpStats, r.Envelope.Kind)
	}
	env, err := json.Marshal(r.Envelope)
	if err != nil {
		return err
	}
	rows := make([]DumpRow, len(r.Rows))
	for i, b := range r.Rows {
		if err := json.Unmarshal(b, &rows[i]); err != nil {
			return fmt.Errorf("%w: row %d: %v", ErrResult, i, err)
		}
	}
	pw := parquet.NewGenericWriter[DumpRow](w, parquet.KeyValueMetadata(EnvelopeKey, string(env)))
	if _, err := pw.Write(rows); err != nil {
		return err
	}
	return pw.Close()
}

// ReadParquet reads a result written by WriteParquet. parquet-go panics on
// some corrupt files; that becomes an ErrResult error.
func ReadParquet(data []byte, name string) (r *Result, err error) {
	defer func() {
		if e := recover(); e != nil {
			r, err = nil, fmt.Errorf("%w: %s: corrupt Parquet: %v", ErrResult, name, e)
		}
	}()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrResult, name, err)
	}
	env, ok := f.Lookup(EnvelopeKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s: no %s metadata: not a ptlab result", ErrResult, name, EnvelopeKey)
	}
	r = &Result{Name: name}
	dec := json.NewDecoder(strings.NewReader(env))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.Envelope); err != nil {
		return nil, fmt.Errorf("%w: %s: envelope: %v", ErrResult, name, err)
	}
	rows, err := parquet.Read[DumpRow](bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrResult, name, err)
	}
	for i := range rows {
		b, err := json.Marshal(&rows[i])
		if err != nil {
			return nil, err
		}
		r.Rows = append(r.Rows, b)
	}
	return r, nil
}

// ReadResult reads a result file, Parquet (by its magic) or JSON Lines.
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(data, []byte("PAR1")) {
		return ReadParquet(data, path)
	}
	return ReadJSONL(data, path)
}

// WriteResult writes r to path, as Parquet if the name ends in ".parquet",
// else as JSON Lines.
func WriteResult(path string, r *Result) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if strings.HasSuffix(path, ".parquet") {
		err = WriteParquet(f, r)
	} else {
		err = WriteJSONL(f, r)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
