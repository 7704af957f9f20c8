package reports

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// partialW50 is a week in progress as issue 20 saw it: sent on Wednesday
// afternoon, tier 1 with about a thousand actions a day, tier 3 with ten
// denials a day, tier 2 with almost none.
func partialW50() *Weekly {
	from, to := (Week{2026, 50}).Bounds(berlin)
	r := &Weekly{
		Team: "finance", Week: "2026-W50", TimeZone: "Europe/Berlin",
		From: from.UTC(), To: to.UTC(), Partial: true,
		GeneratedAt: time.Date(2026, 12, 9, 13, 5, 0, 0, time.UTC),
	}
	r.CoversUntil = r.GeneratedAt
	for i, d := range []string{"2026-12-07", "2026-12-08", "2026-12-09"} {
		r.Daily = append(r.Daily,
			DailyRow{Date: d, Tier: 1, Actions: 980 + 20*i, Denials: 0},
			DailyRow{Date: d, Tier: 2, Actions: 210 - 5*i, Denials: i % 2},
			DailyRow{Date: d, Tier: 3, Actions: 38 + i, Denials: 10 - i})
	}
	// A row for a day that has not begun, which the builder never makes:
	// the chart must not draw it either.
	r.Daily = append(r.Daily, DailyRow{Date: "2026-12-10", Tier: 1, Actions: 0})
	return r
}

// The chart's data: a panel per tier and series, each on its own axis, with
// points for the days that have begun only.
func TestChartData(t *testing.T) {
	r := partialW50()
	data, err := chartPanels(r)
	if err != nil {
		t.Fatal(err)
	}
	// Stated here as well as in the golden file (checked last), so that a
	// wrong -update cannot bless them.
	if len(data.Days) != 7 || data.Days[0] != "2026-12-07" || data.Days[6] != "2026-12-13" {
		t.Errorf("x axis %v, want the whole week Mon 7 to Sun 13 Dec", data.Days)
	}
	if len(data.Panels) != 6 {
		t.Fatalf("%d panels, want actions and denials for each of 3 tiers", len(data.Panels))
	}
	for _, p := range data.Panels {
		name := fmt.Sprintf("tier %d %s", p.Tier, p.Series)
		if len(p.Values) != 3 {
			t.Errorf("%s: %d points, want 3 (Mon to Wed; Thursday has not begun at %s)", name, len(p.Values), r.CoversUntil)
		}
		top := 0
		for _, v := range p.Values {
			top = max(top, v)
		}
		// The axis fits the panel's own values: it holds its maximum and
		// is less than twice it (or 0..1 to 0..4 for a quiet series).
		if p.AxisMax < top || (top > 2 && p.AxisMax >= 2*top) || (top <= 2 && p.AxisMax > 4) {
			t.Errorf("%s: axis 0..%d for a maximum of %d", name, p.AxisMax, top)
		}
		if p.AxisMax%p.Step != 0 || p.AxisMax/p.Step > 4 {
			t.Errorf("%s: axis 0..%d in steps of %d", name, p.AxisMax, p.Step)
		}
	}
	if p := data.Panels[5]; p.Tier != 3 || p.Series != "denials" || p.AxisMax != 10 {
		t.Errorf("tier-3 denials panel %+v, want an axis of 0..10", p)
	}
	if p := data.Panels[0]; p.Tier != 1 || p.Series != "actions" || p.AxisMax != 1500 {
		t.Errorf("tier-1 actions panel %+v, want an axis of 0..1500", p)
	}

	// A final week draws every day it has rows for.
	final := partialW50()
	final.Partial, final.CoversUntil = false, final.To
	fd, err := chartPanels(final)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(fd.Panels[0].Values); got != 4 {
		t.Errorf("final week with rows to Thursday: %d points, want 4", got)
	}

	js, err := json.MarshalIndent(data, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "chart-partial-2026-W50.json", append(js, '\n'))
}

// The PNG, pixel for pixel: testdata/golden/chart-partial-2026-W50.png,
// rewritten with -update (look at it after a change).
func TestChartPNG(t *testing.T) {
	b, err := Chart(partialW50())
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Chart(partialW50())
	if !bytes.Equal(b, again) {
		t.Error("two renderings of the same data differ")
	}
	goldenPNG(t, "chart-partial-2026-W50.png", b)
}

// goldenPNG compares a PNG with its golden file by size and pixels, not
// bytes, so that a change in the PNG encoder's compression alone does not
// fail it. It also bounds the size of the file, which every mail carries.
func goldenPNG(t *testing.T, name string, got []byte) {
	t.Helper()
	img, err := png.Decode(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("%s: not a PNG: %v", name, err)
	}
	if sz := img.Bounds().Size(); sz.X != chartWidth || sz.Y != chartHeight {
		t.Errorf("%s: %v, want %dx%d", name, sz, chartWidth, chartHeight)
	}
	if len(got) > 100<<10 {
		t.Errorf("%s: %d bytes, want at most 100 KiB for a mail", name, len(got))
	}
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	f, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	want, err := png.Decode(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	if diff := pixelDiff(img, want); diff != 0 {
		t.Errorf("%s: %d pixels differ from the golden file (run go test -update if the change is intended, and look at it)", name, diff)
	}
}

// pixelDiff counts the pixels that differ; a size mismatch counts all.
func pixelDiff(a, b image.Image) int {
	if a.Bounds() != b.Bounds() {
		return a.Bounds().Dx() * a.Bounds().Dy()
	}
	n := 0
	for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
		for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
			r1, g1, b1, a1 := a.At(x, y).RGBA()
			r2, g2, b2, a2 := b.At(x, y).RGBA()
			if r1 != r2 || g1 != g2 || b1 != b2 || a1 != a2 {
				n++
			}
		}
	}
	return n
}

func TestAxisRange(t *testing.T) {
	for _, tc := range []struct{ top, max, step int }{
		{0, 1, 1}, {1, 1, 1}, {2, 2, 1}, {4, 4, 1}, {5, 6, 2}, {8, 8, 2}, {9, 10, 5}, {10, 10, 5},
		{20, 20, 5}, {21, 30, 10}, {1000, 1000, 500}, {1050, 1500, 500}, {2_500_000, 3_000_000, 1_000_000},
	} {
		if m, s := axisRange(tc.top); m != tc.max || s != tc.step {
			t.Errorf("axisRange(%d) = %d step %d, want %d step %d", tc.top, m, s, tc.max, tc.step)
		}
	}
}

func TestAxisLabel(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 5: "5", 500: "500", 1500: "1,500", 40_000: "40,000", 999_999: "999,999", 1e6: "1M", 2_500_000: "2.5M"} {
		if got := axisLabel(v); got != want {
			t.Errorf("axisLabel(%v) = %q, want %q", v, got, want)
		}
	}
}
