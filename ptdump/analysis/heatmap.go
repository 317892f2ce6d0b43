package analysis

import (
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"io"
	"math/bits"
	"sort"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"

	"github.com/ptlab/ptlab/ptdump"
)

// ErrNoLinearMap: the dump has no mapped range in a linear-map region.
var ErrNoLinearMap = errors.New("no mapped linear-map range")

// HeatmapOptions controls Heatmap.
type HeatmapOptions struct {
	Width   int // pixels per row; default 256 (512M per row with 4K pages)
	MaxRows int // map rows before a pixel covers several PMD blocks; default 4096
}

// HeatmapInfo describes the picture Heatmap drew.
type HeatmapInfo struct {
	Base        uint64 // address of the first pixel
	PixelBytes  uint64 // VA one pixel covers: the PMD entry size, or a power-of-two multiple of it
	Width, Rows int    // map pixels per row, map rows drawn (separators excluded)
	Skipped     int    // runs of rows without a mapping that were left out (one grey band each)
}

// Heatmap leaf classes, in increasing priority: a pixel shows the smallest
// leaf anywhere in its block, and present-invalid above all.
const (
	heatNone = iota
	heatHuge // a leaf above PMD level (PUD/PGD blocks)
	heatContPMD
	heatPMD
	heatContPTE
	heatPTE
	heatInvalid
	heatClasses
)

var heatColors = [heatClasses]color.RGBA{
	heatNone:    {0x20, 0x20, 0x20, 0xff},
	heatHuge:    {0x1f, 0x77, 0xb4, 0xff},
	heatContPMD: {0x17, 0xbe, 0xcf, 0xff},
	heatPMD:     {0x2c, 0xa0, 0x2c, 0xff},
	heatContPTE: {0xff, 0x7f, 0x0e, 0xff},
	heatPTE:     {0xd6, 0x27, 0x28, 0xff},
	heatInvalid: {0xe3, 0x77, 0xc2, 0xff},
}

var (
	heatSeparator  = color.RGBA{0x80, 0x80, 0x80, 0xff}
	heatBackground = color.RGBA{0xff, 0xff, 0xff, 0xff}
	heatText       = color.RGBA{0, 0, 0, 0xff}
)

func heatClass(g *ptdump.DumpGeometry, r *ptdump.Range) int {
	if !r.Mapped() {
		return heatNone
	}
	if !r.Valid() {
		return heatInvalid
	}
	n, l := len(g.Levels), g.Level(r.Level)
	cont := r.Attrs.Has(ptdump.AttrCont)
	switch {
	case l == n-1 && cont:
		return heatContPTE
	case l == n-1:
		return heatPTE
	case l == n-2 && cont:
		return heatContPMD
	case l == n-2:
		return heatPMD
	case l >= 0:
		return heatHuge
	}
	return heatNone
}

// rowSpan is a run of map rows that hold at least one mapping.
type rowSpan struct {
	first, last uint64 // absolute row numbers
	y           int    // image row of first
}

// Heatmap draws the linear map of d, one pixel per PMD-sized block (2M with
// 4K pages), coloured by the smallest leaf in the block, with a legend below.
// Runs of rows without any mapping are replaced by a grey band, and if the map
// would still be taller than MaxRows a pixel covers 2, 4, ... blocks. Painting
// is per range and per pixel, never per page.
func Heatmap(d *ptdump.Dump, opt HeatmapOptions) (*image.RGBA, HeatmapInfo, error) {
	if opt.Width <= 0 {
		opt.Width = 256
	}
	if opt.MaxRows <= 0 {
		opt.MaxRows = 4096
	}
	g := &d.Geometry
	var info HeatmapInfo
	if len(g.Levels) < 2 {
		return nil, info, fmt.Errorf("%s: %w (no geometry)", d.Name, ErrNoLinearMap)
	}
	regs, idx := ptdump.Regions(d)
	var lin []*ptdump.Range
	for i := range d.Ranges {
		if regs[idx[i]].Kind == "linear" && d.Ranges[i].Mapped() {
			lin = append(lin, &d.Ranges[i])
		}
	}
	if len(lin) == 0 {
		return nil, info, fmt.Errorf("%s: %w", d.Name, ErrNoLinearMap)
	}
	block := g.Levels[len(g.Levels)-2].Size
	width := uint64(opt.Width)
	var spans []rowSpan
	var pixel, rowBytes, base uint64
	drawn := 0
	for k := uint(0); ; k++ {
		pixel = block << k
		if bits.Len64(pixel)+bits.Len64(width) > 62 {
			return nil, info, fmt.Errorf("%s: linear map too large to draw", d.Name)
		}
		rowBytes = pixel * width
		base = lin[0].Start / rowBytes * rowBytes
		spans = spans[:0]
		drawn = 0
		for _, r := range lin {
			f, l := (r.Start-base)/rowBytes, (r.Last()-base)/rowBytes
			if n := len(spans); n > 0 && f <= spans[n-1].last+1 {
				spans[n-1].last = max(spans[n-1].last, l)
				continue
			}
			spans = append(spans, rowSpan{first: f, last: l})
		}
		for i := range spans {
			spans[i].y = drawn + 3*i // a 2-pixel band and a blank line between spans
			drawn += int(spans[i].last - spans[i].first + 1)
		}
		if drawn+3*(len(spans)-1) <= opt.MaxRows {
			break
		}
	}
	mapH := drawn + 3*(len(spans)-1)
	info = HeatmapInfo{Base: base, PixelBytes: pixel, Width: opt.Width, Rows: drawn, Skipped: len(spans) - 1}

	grid := make([]uint8, mapH*opt.Width)
	for _, r := range lin {
		c := uint8(heatClass(g, r))
		p0, p1 := (r.Start-base)/pixel, (r.Last()-base)/pixel
		s := sort.Search(len(spans), func(i int) bool { return spans[i].last >= p0/width })
		for p := p0; p <= p1 && s < len(spans); {
			row := p / width
			if row > spans[s].last {
				s++
				continue
			}
			y := spans[s].y + int(row-spans[s].first)
			rowEnd := min(p1, (row+1)*width-1)
			line := grid[y*opt.Width : (y+1)*opt.Width]
			for q := p; q <= rowEnd; q++ {
				if x := q % width; line[x] < c {
					line[x] = c
				}
			}
			p = rowEnd + 1
		}
	}

	face := basicfont.Face7x13
	lineH := 15
	labels := heatLabels(g, info)
	img := image.NewRGBA(image.Rect(0, 0, opt.Width, mapH+4+lineH*len(labels)))
	draw.Draw(img, img.Bounds(), &image.Uniform{heatBackground}, image.Point{}, draw.Src)
	for y := 0; y < mapH; y++ {
		for x := 0; x < opt.Width; x++ {
			img.SetRGBA(x, y, heatColors[grid[y*opt.Width+x]])
		}
	}
	for i := 1; i < len(spans); i++ {
		for y := spans[i].y - 3; y < spans[i].y-1; y++ {
			for x := 0; x < opt.Width; x++ {
				img.SetRGBA(x, y, heatSeparator)
			}
		}
	}
	dr := font.Drawer{Dst: img, Src: &image.Uniform{heatText}, Face: face}
	for i, l := range labels {
		y := mapH + 4 + i*lineH
		if l.swatch {
			draw.Draw(img, image.Rect(2, y+2, 12, y+12), &image.Uniform{l.color}, image.Point{}, draw.Src)
		}
		dr.Dot = fixed.P(16, y+11)
		dr.DrawString(l.text)
	}
	return img, info, nil
}

type heatLabel struct {
	swatch bool
	color  color.RGBA
	text   string
}

func heatLabels(g *ptdump.DumpGeometry, info HeatmapInfo) []heatLabel {
	n := len(g.Levels)
	pte, pmd := g.Levels[n-1].Name, g.Levels[n-2].Name
	huge := "above " + pmd
	if n >= 3 {
		huge = g.LeafName(g.Levels[n-3].Name, false) + " or larger"
	}
	ls := []heatLabel{
		{false, heatText, fmt.Sprintf("1 px = %s, row = %s", ptdump.FormatSize(info.PixelBytes), ptdump.FormatSize(info.PixelBytes*uint64(info.Width)))},
		{true, heatColors[heatHuge], huge},
	}
	if g.Levels[n-2].ContEntries > 0 {
		ls = append(ls, heatLabel{true, heatColors[heatContPMD], g.LeafName(pmd, true)})
	}
	ls = append(ls, heatLabel{true, heatColors[heatPMD], g.LeafName(pmd, false)})
	if g.Levels[n-1].ContEntries > 0 {
		ls = append(ls, heatLabel{true, heatColors[heatContPTE], g.LeafName(pte, true)})
	}
	ls = append(ls, heatLabel{true, heatColors[heatPTE], g.LeafName(pte, false)})
	if g.Arch == ptdump.ArchARM64 {
		ls = append(ls, heatLabel{true, heatColors[heatInvalid], "present-invalid (F)"})
	}
	ls = append(ls, heatLabel{true, heatColors[heatNone], "unmapped"})
	if info.Skipped > 0 {
		ls = append(ls, heatLabel{true, heatSeparator, "band: unmapped rows left out"})
	}
	return ls
}

// WriteHeatmapPNG writes Heatmap's picture as PNG.
func WriteHeatmapPNG(w io.Writer, d *ptdump.Dump, opt HeatmapOptions) (HeatmapInfo, error) {
	img, info, err := Heatmap(d, opt)
	if err != nil {
		return info, err
	}
	return info, png.Encode(w, img)
}
