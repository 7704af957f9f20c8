package reports

import (
	"bytes"
	"fmt"
	"math"
	"time"

	chart "github.com/wcharczuk/go-chart/v2"
	"github.com/wcharczuk/go-chart/v2/drawing"
)

var tierColors = [4]drawing.Color{
	{},
	{R: 0x2b, G: 0x6c, B: 0xb0, A: 0xff}, // tier 1 blue
	{R: 0xe0, G: 0x8a, B: 0x1e, A: 0xff}, // tier 2 orange
	{R: 0xc0, G: 0x2f, B: 0x2f, A: 0xff}, // tier 3 red
}

// Chart renders daily actions (solid, left axis) and denials (dashed, right
// axis) per tier as a PNG. Denials get their own axis: they are a few per
// cent of actions and would lie flat on the actions' scale. (go-chart draws
// its primary axis on the right, so denials are the primary series.)
func Chart(r *Weekly) ([]byte, error) {
	var days []string
	idx := map[string]int{}
	for _, d := range r.Daily {
		if _, ok := idx[d.Date]; !ok {
			idx[d.Date] = len(days)
			days = append(days, d.Date)
		}
	}
	if len(days) == 0 {
		return nil, fmt.Errorf("reports: chart: no days")
	}
	xs := make([]float64, len(days))
	for i := range xs {
		xs[i] = float64(i)
	}
	var actions, denials [4][]float64
	for t := 1; t <= 3; t++ {
		actions[t], denials[t] = make([]float64, len(days)), make([]float64, len(days))
	}
	maxA, maxD := 1.0, 1.0
	for _, d := range r.Daily {
		if d.Tier < 1 || d.Tier > 3 {
			continue
		}
		i := idx[d.Date]
		actions[d.Tier][i], denials[d.Tier][i] = float64(d.Actions), float64(d.Denials)
		maxA, maxD = math.Max(maxA, float64(d.Actions)), math.Max(maxD, float64(d.Denials))
	}
	var series []chart.Series
	for t := 1; t <= 3; t++ {
		series = append(series, chart.ContinuousSeries{
			Name:    fmt.Sprintf("tier %d", t),
			YAxis:   chart.YAxisSecondary,
			XValues: xs, YValues: actions[t],
			Style: chart.Style{StrokeColor: tierColors[t], StrokeWidth: 2.5, DotColor: tierColors[t], DotWidth: 3},
		})
	}
	for t := 1; t <= 3; t++ {
		series = append(series, chart.ContinuousSeries{
			Name:    fmt.Sprintf("tier %d denied", t),
			XValues: xs, YValues: denials[t],
			Style: chart.Style{StrokeColor: tierColors[t], StrokeWidth: 1.5, StrokeDashArray: []float64{5, 4}},
		})
	}
	var ticks []chart.Tick
	for i, d := range days {
		label := d
		if t, err := time.Parse("2006-01-02", d); err == nil {
			label = t.Format("Mon 2")
		}
		ticks = append(ticks, chart.Tick{Value: float64(i), Label: label})
	}
	aMax, dMax := niceMax(maxA), niceMax(maxD)
	graph := chart.Chart{
		Width: 720, Height: 300,
		Background: chart.Style{Padding: chart.Box{Top: 34, Left: 28, Right: 28, Bottom: 8}},
		XAxis:      chart.XAxis{Ticks: ticks, Range: &chart.ContinuousRange{Min: -0.2, Max: float64(len(days)-1) + 0.2}},
		// Ticks come from the ranges: go-chart 2.1.2 sizes a secondary
		// axis with explicit Ticks by the primary axis's ticks.
		YAxisSecondary: chart.YAxis{Name: "actions (solid)", Range: intRange{&chart.ContinuousRange{Min: 0, Max: aMax}}},
		YAxis:          chart.YAxis{Name: "denied (dashed)", Range: intRange{&chart.ContinuousRange{Min: 0, Max: dMax}}},
		Series:         series,
	}
	graph.Elements = []chart.Renderable{chart.LegendThin(&graph)}
	var b bytes.Buffer
	if err := graph.Render(chart.PNG, &b); err != nil {
		return nil, fmt.Errorf("reports: render chart: %w", err)
	}
	return b.Bytes(), nil
}

// intRange is a range from 0 that labels itself with whole numbers.
type intRange struct{ *chart.ContinuousRange }

// GetTicks implements chart.TicksProvider.
func (r intRange) GetTicks(chart.Renderer, chart.Style, chart.ValueFormatter) []chart.Tick {
	return intTicks(r.Max)
}

// intTicks returns whole-number ticks from 0 to max (a niceMax value):
// the smallest step of 1, 2 or 5 times a power of ten giving at most five
// intervals.
func intTicks(max float64) []chart.Tick {
	step := 1.0
	for p := 1.0; ; p *= 10 {
		found := false
		for _, m := range []float64{1, 2, 5} {
			if max/(m*p) <= 5 {
				step, found = m*p, true
				break
			}
		}
		if found {
			break
		}
	}
	var ticks []chart.Tick
	for v := 0.0; v <= max+step/2; v += step {
		ticks = append(ticks, chart.Tick{Value: v, Label: fmt.Sprintf("%.0f", v)})
	}
	return ticks
}

// niceMax rounds an axis maximum up to 1, 2 or 5 times a power of ten,
// with headroom for the legend.
func niceMax(v float64) float64 {
	v *= 1.25
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}
