package report

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
	"github.com/go-echarts/go-echarts/v2/render"

	"github.com/ptlab/ptlab/ptdump"
	"github.com/ptlab/ptlab/ptdump/analysis"
	"github.com/ptlab/ptlab/workload"
)

// echartsJS is Apache ECharts (dist/echarts.min.js of the npm package,
// Apache-2.0, see assets/ECHARTS-LICENSE), inlined into every page so the
// report works offline; assets/update.sh refreshes it.
//
//go:embed assets/echarts.min.js
var echartsJS string

// heatColors are the heat map's class colours (HeatClasses order): large
// leaves cool, base pages hot.
var heatColors = []string{"#f2f2f2", "#1a3a8f", "#2f6fd6", "#5fb0e8", "#f0b43c", "#d7301f", "#7b2d8e"}

// Chart is one rendered chart of a page: its element and script, and what
// a browser test expects to find in it.
type Chart struct {
	ID      string
	Title   string
	Series  []string
	Element template.HTML
	Script  template.HTML
}

type htmlRow struct {
	Label, Explain string
	Values         []string
}

type htmlDiff struct {
	Preset, Text string
}

type htmlPage struct {
	Title       string
	Subtitle    string
	Verdict     *Verdict
	Presets     []string
	Rows        []htmlRow
	Groups      []chartGroup
	Heat        []Chart
	HeatNote    string
	Diffs       []htmlDiff
	Check       string
	Stats       string
	Charts      []Chart // every chart, for the page's manifest
	EChartsJS   template.JS
	GeneratedBy string
}

type chartGroup struct {
	Name   string
	Charts []Chart
}

// chartInit sizes a chart to its grid cell and gives it a fixed ID (the
// page is byte-identical for the same results).
func chartInit(id string) charts.GlobalOpts {
	return charts.WithInitializationOpts(opts.Initialization{ChartID: id, Width: "100%", Height: "300px", Renderer: "canvas"})
}

// seriesValue scales a metric for a chart axis: bytes in MiB.
func seriesValue(m *Metric, v float64) (float64, string) {
	switch m.Unit {
	case UnitBytes:
		return math.Round(v/(1<<20)*100) / 100, "MiB"
	case UnitNS:
		return v / 1e6, "ms"
	}
	return v, string(m.Unit)
}

// timeCharts draws one line chart per sampled metric that is not zero in
// every run, series by preset, grouped like the table.
func timeCharts(results []*workload.Result) []chartGroup {
	var groups []chartGroup
	sizes := leafSizes(results)
	var xs []string
	longest := results[0]
	for _, r := range results {
		if len(r.Series) > len(longest.Series) {
			longest = r
		}
	}
	for _, s := range longest.Series {
		xs = append(xs, fmtMinutes(s.At))
	}
	for i, m := range MetricsFor(results) {
		if m.Sample == nil || m.Volatile {
			continue
		}
		any := false
		for _, r := range results {
			for j := range r.Series {
				any = any || m.Sample(&r.Series[j]) != 0
			}
		}
		if !any {
			continue
		}
		id := fmt.Sprintf("series%d", i)
		title := strings.TrimSpace(m.LabelFor(sizes))
		_, unit := seriesValue(&m, 0)
		line := charts.NewLine()
		line.SetGlobalOptions(
			chartInit(id),
			charts.WithAnimation(false),
			charts.WithTitleOpts(opts.Title{Title: title, Subtitle: unit + " over simulated time", Left: "left"}),
			charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
			charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "bottom"}),
			charts.WithXAxisOpts(opts.XAxis{Name: "t", Type: "category"}),
			charts.WithYAxisOpts(opts.YAxis{Name: unit, Type: "value", Scale: opts.Bool(true)}),
			charts.WithGridOpts(opts.Grid{Left: "60", Right: "20", Top: "60", Bottom: "60"}),
		)
		line.SetXAxis(xs)
		var names []string
		for _, r := range results {
			data := make([]opts.LineData, len(r.Series))
			for j := range r.Series {
				v, _ := seriesValue(&m, m.Sample(&r.Series[j]))
				data[j] = opts.LineData{Value: v}
			}
			line.AddSeries(r.Preset, data, charts.WithLineChartOpts(opts.LineChart{Step: "end", ShowSymbol: opts.Bool(false)}))
			names = append(names, r.Preset)
		}
		c := chartOf(id, title, names, line.RenderSnippet())
		if n := len(groups); n == 0 || groups[n-1].Name != m.Group {
			groups = append(groups, chartGroup{Name: m.Group})
		}
		groups[len(groups)-1].Charts = append(groups[len(groups)-1].Charts, c)
	}
	return groups
}

func fmtMinutes(d time.Duration) string {
	if d%time.Minute == 0 {
		return fmt.Sprintf("%dm", int(d/time.Minute))
	}
	return d.Round(time.Second).String()
}

func chartOf(id, title string, series []string, s render.ChartSnippet) Chart {
	return Chart{ID: id, Title: title, Series: series, Element: template.HTML(s.Element), Script: template.HTML(s.Script)}
}

// heatChart draws a heat grid: one heatmap series per leaf class present,
// rows labelled with their start address, a legend of classes.
func heatChart(id, title string, h *HeatGrid) Chart {
	hm := charts.NewHeatMap()
	rowBytes := h.CellBytes * uint64(h.Cols)
	ys := make([]string, h.Rows)
	for y := range ys {
		ys[y] = fmt.Sprintf("%#x", h.Base+uint64(y)*rowBytes)
	}
	xs := make([]string, h.Cols)
	for x := range xs {
		xs[x] = "+" + ptdump.FormatSize(uint64(x)*h.CellBytes)
	}
	height := max(240, min(900, 14*h.Rows+120))
	hm.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{ChartID: id, Width: "100%", Height: fmt.Sprintf("%dpx", height), Renderer: "canvas"}),
		charts.WithAnimation(false),
		charts.WithTitleOpts(opts.Title{Title: title, Subtitle: fmt.Sprintf("1 cell = %s, 1 row = %s; each cell shows the smallest leaf in it", ptdump.FormatSize(h.CellBytes), ptdump.FormatSize(rowBytes))}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true)}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "bottom"}),
		charts.WithXAxisOpts(opts.XAxis{Name: "offset in row", NameLocation: "middle", NameGap: 25, Type: "category", Data: xs}),
		charts.WithYAxisOpts(opts.YAxis{Name: "linear-map address", Type: "category", Data: ys, Inverse: opts.Bool(true)}),
		charts.WithGridOpts(opts.Grid{Left: "150", Right: "20", Top: "70", Bottom: "70"}),
	)
	// Draw every cell at once: ECharts renders a series of more than
	// progressiveThreshold (3000) items over several frames, so a
	// screenshot or print could catch the map half drawn.
	hm.AddJSFuncs(`%MY_ECHARTS%.setOption({series: %MY_ECHARTS%.getOption().series.map(function () { return {progressive: 0}; })});`)
	var names []string
	for c := range HeatClasses {
		var data []opts.HeatMapData
		for i, v := range h.Class {
			if int(v) == c {
				data = append(data, opts.HeatMapData{Value: [3]int{i % h.Cols, i / h.Cols, c}})
			}
		}
		if len(data) == 0 {
			continue
		}
		hm.AddSeries(HeatClasses[c], data, charts.WithItemStyleOpts(opts.ItemStyle{Color: heatColors[c]}))
		names = append(names, HeatClasses[c])
	}
	return chartOf(id, title, names, hm.RenderSnippet())
}

// CompareHTML is the input of a comparison page.
type CompareHTML struct {
	Scenario *workload.Scenario
	Modules  int
	Results  []*workload.Result // with Dump when heat maps and diffs are wanted
	Verdict  *Verdict
	Check    string // the checker's result when compare --check ran
}

// WriteCompareHTML writes one self-contained page: the verdict, the table
// with each row explained on hover, time-series charts per metric, the
// linear-map heat map of each preset side by side, and each preset's final
// dump diffed against the baseline's. ECharts is inlined: the page loads
// nothing from the network.
func WriteCompareHTML(w io.Writer, in CompareHTML) error {
	res := in.Results
	if len(res) == 0 {
		return fmt.Errorf("report: no results")
	}
	s := in.Scenario
	p := &htmlPage{
		Title:    fmt.Sprintf("ptlab compare: %s", s.Name),
		Subtitle: fmt.Sprintf("machine %s; %d modules, %v simulated, seed %d", Machine(res[0].Config), in.Modules, time.Duration(s.Work.Duration), s.Seed),
		Verdict:  in.Verdict, Check: in.Check, EChartsJS: template.JS(echartsJS),
	}
	sizes := leafSizes(res)
	for _, r := range res {
		p.Presets = append(p.Presets, r.Preset)
	}
	for _, m := range MetricsFor(res) {
		row := htmlRow{Label: strings.TrimSpace(m.LabelFor(sizes)), Explain: m.Explain}
		for _, r := range res {
			row.Values = append(row.Values, Format(&m, m.Value(r)))
		}
		p.Rows = append(p.Rows, row)
	}
	p.Groups = timeCharts(res)
	dumps := map[string]*ptdump.Dump{}
	for i, r := range res {
		if r.Dump == nil {
			continue
		}
		d, err := ptdump.Parse(bytes.NewReader(r.Dump), r.Preset, ptdump.ParseOptions{})
		if err != nil {
			return fmt.Errorf("report: %s's final dump: %w", r.Preset, err)
		}
		dumps[r.Preset] = d
		h, err := LinearHeat(d)
		if err != nil {
			return err
		}
		p.Heat = append(p.Heat, heatChart(fmt.Sprintf("heat%d", i), "linear map: "+r.Preset, h))
	}
	if base := dumps[in.Verdict.Baseline]; base != nil {
		for _, r := range res {
			if r.Preset == in.Verdict.Baseline || dumps[r.Preset] == nil {
				continue
			}
			var b bytes.Buffer
			if err := analysis.Diff(base, dumps[r.Preset]).WriteText(&b, 200); err != nil {
				return err
			}
			p.Diffs = append(p.Diffs, htmlDiff{Preset: r.Preset, Text: b.String()})
		}
	}
	return writePage(w, p)
}

// WriteDumpHTML writes a page for one real dump: its statistics, leaf sizes
// per region as a chart, and its linear-map heat map.
func WriteDumpHTML(w io.Writer, d *ptdump.Dump) error {
	s := analysis.Stats(d)
	var text bytes.Buffer
	if err := s.WriteText(&text); err != nil {
		return err
	}
	p := &htmlPage{Title: "ptlab dump stats: " + d.Name, Subtitle: s.Geometry, Stats: text.String(), EChartsJS: template.JS(echartsJS)}
	bar := charts.NewBar()
	const id = "leaves"
	bar.SetGlobalOptions(
		chartInit(id), charts.WithAnimation(false),
		charts.WithTitleOpts(opts.Title{Title: "bytes mapped per leaf size and region", Subtitle: "MiB, stacked"}),
		charts.WithTooltipOpts(opts.Tooltip{Show: opts.Bool(true), Trigger: "axis"}),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "bottom"}),
		charts.WithXAxisOpts(opts.XAxis{Name: "region", Type: "category"}),
		charts.WithYAxisOpts(opts.YAxis{Name: "MiB", Type: "value"}),
	)
	var regions []string
	leafNames := []string{}
	byLeaf := map[string][]opts.BarData{}
	for _, r := range s.Regions {
		if r.ValidBytes+r.InvalidBytes == 0 {
			continue
		}
		regions = append(regions, r.Name)
	}
	for ri, name := range regions {
		var reg *analysis.RegionStats
		for i := range s.Regions {
			if s.Regions[i].Name == name {
				reg = &s.Regions[i]
			}
		}
		for _, l := range reg.Leaves {
			if _, ok := byLeaf[l.Leaf]; !ok {
				leafNames = append(leafNames, l.Leaf)
				byLeaf[l.Leaf] = make([]opts.BarData, len(regions))
			}
			byLeaf[l.Leaf][ri] = opts.BarData{Value: math.Round(float64(l.Bytes)/(1<<20)*100) / 100}
		}
	}
	bar.SetXAxis(regions)
	for _, l := range leafNames {
		bar.AddSeries(l, byLeaf[l], charts.WithBarChartOpts(opts.BarChart{Stack: "leaves"}))
	}
	p.Groups = []chartGroup{{Name: "leaf sizes", Charts: []Chart{chartOf(id, "bytes mapped per leaf size and region", leafNames, bar.RenderSnippet())}}}
	if h, err := LinearHeat(d); err == nil {
		p.Heat = append(p.Heat, heatChart("heat0", "linear map: "+d.Name, h))
	} else {
		p.HeatNote = err.Error()
	}
	return writePage(w, p)
}

func writePage(w io.Writer, p *htmlPage) error {
	for _, g := range p.Groups {
		p.Charts = append(p.Charts, g.Charts...)
	}
	p.Charts = append(p.Charts, p.Heat...)
	p.GeneratedBy = "ptlab"
	return pageTemplate.Execute(w, p)
}

//go:embed page.html.tmpl
var pageHTML string

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"seriesList": func(s []string) string { return strings.Join(s, "\x1f") },
}).Parse(pageHTML))
