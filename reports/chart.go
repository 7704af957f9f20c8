package reports

import (
	"fmt"
	"strconv"
	"time"

	"github.com/go-analyze/charts"
)

var tierColors = [4]charts.Color{
	{},
	{R: 0x2b, G: 0x6c, B: 0xb0, A: 0xff}, // tier 1 blue
	{R: 0xe0, G: 0x8a, B: 0x1e, A: 0xff}, // tier 2 orange
	{R: 0xc0, G: 0x2f, B: 0x2f, A: 0xff}, // tier 3 red
}

// The chart's size: a row of two panels per tier.
const (
	chartWidth, chartHeight = 760, 480
	chartTitleHeight        = 30
)

// chartData is what the chart draws: the week's local days (the x axis)
// and one panel per tier and series.
type chartData struct {
	Days   []string     `json:"days"` // YYYY-MM-DD, the whole week when known
	Panels []chartPanel `json:"panels"`
}

// chartPanel is one small chart with its own y axis. Values has one entry
// per day that has begun (the first len(Values) of Days): a day still to
// come has no point, not a zero.
type chartPanel struct {
	Tier    int    `json:"tier"`
	Series  string `json:"series"` // actions or denials
	Title   string `json:"title"`
	Values  []int  `json:"values"`
	AxisMax int    `json:"axis_max"`
	Step    int    `json:"axis_step"`
}

// chartPanels lays out r.Daily: rows per tier, actions then denials. The
// x axis names every day of the week when r.From is set; points stop at
// the last day with a row that began before r.CoversUntil.
func chartPanels(r *Weekly) (chartData, error) {
	seen := map[string]bool{}
	var rowDays []string
	for _, d := range r.Daily {
		if !seen[d.Date] {
			seen[d.Date] = true
			rowDays = append(rowDays, d.Date)
		}
	}
	days := rowDays
	if !r.From.IsZero() {
		loc := r.Location()
		start := r.From.In(loc)
		days = nil
		for i := range 7 {
			days = append(days, start.AddDate(0, 0, i).Format("2006-01-02"))
		}
	}
	if len(days) == 0 {
		return chartData{}, fmt.Errorf("reports: chart: no days")
	}
	// The days drawn: those up to the last one with rows, and begun by
	// CoversUntil (the builder already stops there; the chart does not
	// rely on it).
	n := 0
	for i, d := range days {
		if seen[d] && (r.CoversUntil.IsZero() || dayStart(d, r.Location()).Before(r.CoversUntil)) {
			n = i + 1
		}
	}
	idx := map[string]int{}
	for i, d := range days[:n] {
		idx[d] = i
	}
	out := chartData{Days: days}
	for tier := 1; tier <= 3; tier++ {
		actions := chartPanel{Tier: tier, Series: "actions", Title: fmt.Sprintf("Tier %d actions per day", tier), Values: make([]int, n)}
		denials := chartPanel{Tier: tier, Series: "denials", Title: fmt.Sprintf("Tier %d denials per day", tier), Values: make([]int, n)}
		for _, d := range r.Daily {
			if i, ok := idx[d.Date]; ok && d.Tier == tier {
				actions.Values[i], denials.Values[i] = d.Actions, d.Denials
			}
		}
		for _, p := range []*chartPanel{&actions, &denials} {
			top := 0
			for _, v := range p.Values {
				top = max(top, v)
			}
			p.AxisMax, p.Step = axisRange(top)
		}
		out.Panels = append(out.Panels, actions, denials)
	}
	return out, nil
}

// dayStart is 00:00 of the local date d (YYYY-MM-DD) in loc.
func dayStart(d string, loc *time.Location) time.Time {
	t, err := time.ParseInLocation("2006-01-02", d, loc)
	if err != nil {
		return time.Time{}
	}
	return t
}

// axisRange returns an axis maximum of at least top and at least 1, and
// the whole-number step between its labels: 1, 2 or 5 times a power of
// ten, at most four intervals.
func axisRange(top int) (axisMax, step int) {
	top = max(top, 1)
	for p := 1; ; p *= 10 {
		for _, m := range []int{1, 2, 5} {
			if s := m * p; (top+s-1)/s <= 4 {
				return (top + s - 1) / s * s, s
			}
		}
	}
}

// axisLabel writes a y-axis value as the report writes counts: 1,500;
// millions as 2.5M, to keep the axis narrow.
func axisLabel(v float64) string {
	if v >= 1e6 {
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	}
	s := strconv.FormatFloat(v, 'f', 0, 64)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// Chart renders the week's daily actions and denials as a PNG of small
// multiples: a row per tier, its actions as a line on the left and its
// denials as bars on the right, each panel with its own y axis from zero,
// so that a tier's few denials are not flattened by another's thousands
// of actions. The x axis names the whole week; a partial week's points
// stop at today.
func Chart(r *Weekly) ([]byte, error) {
	data, err := chartPanels(r)
	if err != nil {
		return nil, err
	}
	labels := make([]string, len(data.Days))
	for i, d := range data.Days {
		labels[i] = d
		if t, err := time.Parse("2006-01-02", d); err == nil {
			labels[i] = t.Format("Mon 2")
		}
	}
	p := charts.NewPainter(charts.PainterOptions{OutputFormat: charts.ChartOutputPNG, Width: chartWidth, Height: chartHeight})
	p.FilledRect(0, 0, chartWidth, chartHeight, charts.ColorWhite, charts.ColorWhite, 0)
	heading := "Actions and denials per local day, by tier"
	if r.TimeZone != "" {
		heading += " (" + r.TimeZone + ")"
	}
	if r.Partial {
		heading += ": week in progress, days so far"
	}
	p.Text(heading, 10, 20, 0, charts.FontStyle{FontSize: 12, FontColor: charts.ColorBlack})

	rowH := (chartHeight - chartTitleHeight) / 3
	for i, panel := range data.Panels {
		row, col := i/2, i%2
		box := charts.NewBox(col*chartWidth/2, chartTitleHeight+row*rowH, (col+1)*chartWidth/2, chartTitleHeight+(row+1)*rowH)
		if err := drawPanel(p.Child(charts.PainterBoxOption(box)), panel, labels); err != nil {
			return nil, fmt.Errorf("reports: render chart: %s: %w", panel.Title, err)
		}
	}
	b, err := p.Bytes()
	if err != nil {
		return nil, fmt.Errorf("reports: render chart: %w", err)
	}
	return b, nil
}

// drawPanel draws one panel: actions as a line, denials as bars.
func drawPanel(p *charts.Painter, panel chartPanel, labels []string) error {
	values := make([]float64, len(labels))
	for i := range values {
		values[i] = charts.GetNullValue()
		if i < len(panel.Values) {
			values[i] = float64(panel.Values[i])
		}
	}
	theme := charts.GetTheme(charts.ThemeLight).WithSeriesColors([]charts.Color{tierColors[panel.Tier]})
	title := charts.TitleOption{Text: panel.Title, FontStyle: charts.FontStyle{FontSize: 10, FontColor: tierColors[panel.Tier]}}
	yAxis := charts.YAxisOption{
		Min: charts.Ptr(0.0), Max: charts.Ptr(float64(panel.AxisMax)),
		LabelCount:          panel.AxisMax/panel.Step + 1,
		PreferNiceIntervals: charts.Ptr(false),
		ValueFormatter:      axisLabel,
		LabelFontStyle:      charts.FontStyle{FontSize: 9},
	}
	// Every day labelled, and points centred on their day as bars are.
	xAxis := charts.XAxisOption{Labels: labels, LabelCount: len(labels), BoundaryGap: charts.Ptr(true), LabelFontStyle: charts.FontStyle{FontSize: 9}}
	padding := charts.NewBox(8, 4, 12, 4)
	noLegend := charts.LegendOption{Show: charts.Ptr(false)}
	if panel.Series == "actions" {
		return p.LineChart(charts.LineChartOption{
			Theme: theme, Padding: padding, Title: title, Legend: noLegend,
			XAxis: xAxis, YAxis: []charts.YAxisOption{yAxis},
			SeriesList:      charts.NewSeriesListLine([][]float64{values}),
			LineStrokeWidth: 2,
		})
	}
	return p.BarChart(charts.BarChartOption{
		Theme: theme, Padding: padding, Title: title, Legend: noLegend,
		CategoryAxis: xAxis, ValueAxis: []charts.ValueAxisOption{yAxis},
		SeriesList: charts.NewSeriesListBar([][]float64{values}),
		BarSize:    0.5,
	})
}
