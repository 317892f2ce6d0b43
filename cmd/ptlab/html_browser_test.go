package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserPath finds a Chromium-family browser; the browser test is skipped
// only when there is none (.ci/install-chromium.sh installs Debian's).
func browserPath() string {
	if p := os.Getenv("PTLAB_BROWSER"); p != "" {
		return p
	}
	for _, n := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "headless-shell"} {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	return ""
}

// chartState is what the page reports about one chart.
type chartState struct {
	ID       string   `json:"id"`
	Expected []string `json:"expected"`
	Series   []string `json:"series"`
	Width    int      `json:"width"`
	Height   int      `json:"height"`
	Painted  int      `json:"painted"` // non-blank pixels sampled on the canvas
	Error    string   `json:"error"`
}

const inspectCharts = `(() => {
  const out = [];
  for (const div of document.querySelectorAll('div.chart')) {
    const st = {id: div.dataset.chartId, expected: div.dataset.series ? div.dataset.series.split('\x1f') : [], series: [], width: 0, height: 0, painted: 0, error: ''};
    try {
      const el = div.querySelector('.item');
      const inst = echarts.getInstanceByDom(el);
      if (!inst) { st.error = 'no echarts instance'; out.push(st); continue; }
      st.series = (inst.getOption().series || []).map(s => s.name);
      const cv = el.querySelector('canvas');
      if (cv) {
        st.width = cv.width; st.height = cv.height;
        const data = cv.getContext('2d').getImageData(0, 0, cv.width, cv.height).data;
        for (let i = 3; i < data.length; i += 4 * 97) { if (data[i] !== 0) st.painted++; }
      }
    } catch (e) { st.error = String(e); }
    out.push(st);
  }
  return JSON.stringify(out);
})()`

// loadPage opens a page in headless Chromium and returns its charts; it
// fails on any console error, uncaught exception or failed (or any
// non-file) request, and saves a screenshot.
func loadPage(t *testing.T, browser, page, shot string) []chartState {
	t.Helper()
	actx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1400, 1000))...)
	defer cancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	var mu sync.Mutex
	var problems []string
	listen := func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch e := ev.(type) {
		case *runtime.EventConsoleAPICalled:
			if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert {
				var args []string
				for _, a := range e.Args {
					args = append(args, a.Description+string(a.Value))
				}
				problems = append(problems, "console error: "+strings.Join(args, " "))
			}
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails.Text
			if e.ExceptionDetails.Exception != nil {
				d += " " + e.ExceptionDetails.Exception.Description
			}
			problems = append(problems, "exception: "+d)
		case *network.EventLoadingFailed:
			problems = append(problems, "failed request: "+e.ErrorText)
		case *network.EventRequestWillBeSent:
			if u := e.Request.URL; !strings.HasPrefix(u, "file://") && !strings.HasPrefix(u, "data:") {
				problems = append(problems, "network request: "+u)
			}
		}
	}
	// Start the browser and listen before the page loads.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", browser, err)
	}
	if err := chromedp.Listen(ctx, listen); err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(ctx, 90*time.Second)
	defer tcancel()
	if err := chromedp.Do(tctx, chromedp.Navigate("file://"+page), chromedp.WaitReady("body"), chromedp.Sleep(500*time.Millisecond)); err != nil {
		t.Fatalf("%s: %v", page, err)
	}
	js, err := chromedp.Run(tctx, chromedp.Evaluate[string](inspectCharts))
	if err != nil {
		t.Fatalf("%s: %v", page, err)
	}
	png, err := chromedp.Run(tctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("%s: screenshot: %v", page, err)
	}
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot of %s: %s", filepath.Base(page), shot)
	mu.Lock()
	for _, p := range problems {
		t.Errorf("%s: %s", filepath.Base(page), p)
	}
	mu.Unlock()
	var charts []chartState
	if err := json.Unmarshal([]byte(js), &charts); err != nil {
		t.Fatal(err)
	}
	return charts
}

func checkCharts(t *testing.T, page string, charts []chartState, wantHeat int, presets []string) {
	t.Helper()
	heat := 0
	for _, c := range charts {
		if c.Error != "" {
			t.Errorf("%s: chart %s: %s", page, c.ID, c.Error)
			continue
		}
		if strings.Join(c.Series, ",") != strings.Join(c.Expected, ",") || len(c.Series) == 0 {
			t.Errorf("%s: chart %s series %q, want %q", page, c.ID, c.Series, c.Expected)
		}
		if c.Width == 0 || c.Height == 0 || c.Painted == 0 {
			t.Errorf("%s: chart %s canvas %dx%d, %d painted samples", page, c.ID, c.Width, c.Height, c.Painted)
		}
		if strings.HasPrefix(c.ID, "heat") {
			heat++
		} else if presets != nil && strings.Join(c.Series, ",") != strings.Join(presets, ",") {
			t.Errorf("%s: chart %s series %q, want the presets %q", page, c.ID, c.Series, presets)
		}
	}
	if heat != wantHeat {
		t.Errorf("%s: %d heat maps, want %d", page, heat, wantHeat)
	}
}

// The comparison page and the dump page load offline in a real browser
// without errors, and every chart renders with the expected series.
func TestHTMLInBrowser(t *testing.T) {
	browser := browserPath()
	if browser == "" {
		t.Skip("no Chromium-family browser installed (.ci/install-chromium.sh installs Debian's chromium)")
	}
	if testing.Short() {
		t.Skip("-short")
	}
	dir := t.TempDir()
	shots := os.Getenv("PTLAB_SCREENSHOT_DIR")
	if shots == "" {
		shots = dir
	}
	scen := filepath.Join(dir, "short.yaml")
	if err := os.WriteFile(scen, []byte(`name: browser-test
seed: 1
machine: bbml2-server
config: {ram: [{base: 0x80000000, size: 4G}]}
presets: [mainline, rox-cache, collapse]
workload:
  modules: server
  duration: 10m
  bpf: {per_hour: 360, lifetime: 5m}
  module_reload: {per_hour: 30}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "compare.html")
	if _, err := run(t, "compare", "--quiet", "--scenario", scen, "--html", page); err != nil {
		t.Fatal(err)
	}
	charts := loadPage(t, browser, page, filepath.Join(shots, "ptlab-compare.png"))
	if len(charts) < 10 {
		t.Errorf("compare page: %d charts", len(charts))
	}
	checkCharts(t, "compare.html", charts, 3, []string{"mainline", "rox-cache", "collapse"})

	dpage := filepath.Join(dir, "dump.html")
	if _, err := run(t, "dump", "stats", "../../ptdump/testdata/002-ryan-roberts-bbml2-v7-ampereone-mode3-ptes.txt", "--html", dpage); err != nil {
		t.Fatal(err)
	}
	checkCharts(t, "dump.html", loadPage(t, browser, dpage, filepath.Join(shots, "ptlab-dump.png")), 1, nil)

	// An x86 dump has no arm64 linear map: the page says so, no heat map.
	xpage := filepath.Join(dir, "x86.html")
	if _, err := run(t, "dump", "stats", "../../ptdump/testdata/901-x86-fedora-4.18rc8-ryzen-dmesg-excerpt.txt", "--html", xpage); err != nil {
		t.Fatal(err)
	}
	checkCharts(t, "x86.html", loadPage(t, browser, xpage, filepath.Join(shots, "ptlab-x86.png")), 0, nil)
}
