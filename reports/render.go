package reports

import (
	"bytes"
	"embed"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

//go:embed templates/weekly.html.tmpl
var templateFS embed.FS

var ratioMetrics = map[string]bool{
	"auto_approved_share": true, "escalated_share": true, "denial_rate": true,
	"human_override_rate": true, "tool_failure_rate": true,
}

var metricLabels = map[string]string{
	"actions": "Actions", "denied": "Denied", "escalated": "Escalated to a human",
	"auto_approved_share": "Share auto-approved", "escalated_share": "Share escalated",
	"denial_rate": "Denial rate", "human_override_rate": "Human override rate",
	"tool_failure_rate": "Tool failure rate", "median_approve_seconds": "Median time to approve",
	"violations": "Governance violations", "alerts": "Anomaly alerts",
}

func pct(v *float64) string {
	if v == nil {
		return "—"
	}
	return strconv.FormatFloat(*v*100, 'f', 1, 64) + "%"
}

func secs(v *float64) string {
	if v == nil {
		return "—"
	}
	d := time.Duration(*v * float64(time.Second)).Round(time.Second)
	return d.String()
}

func num(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// plural is "1 alert", "2 alerts": n and the noun in the number n takes.
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return strconv.Itoa(n) + " " + many
}

func metricValue(name string, v *float64) string {
	switch {
	case v == nil:
		return "—"
	case ratioMetrics[name]:
		return pct(v)
	case name == "median_approve_seconds":
		return secs(v)
	default:
		return num(*v)
	}
}

func deltaValue(name string, v *float64) string {
	if v == nil {
		return "—"
	}
	sign := "+"
	if *v < 0 {
		sign = "−"
	}
	a := math.Abs(*v)
	switch {
	case ratioMetrics[name]:
		return sign + strconv.FormatFloat(a*100, 'f', 1, 64) + " pp"
	case name == "median_approve_seconds":
		return sign + secs(&a)
	default:
		return sign + num(a)
	}
}

// HTML renders the report as the mail's HTML part; chartSrc is the chart
// image's address: "cid:..." in the mail, a file name on disk.
func HTML(r *Weekly, chartSrc string) ([]byte, error) {
	loc := r.Location()
	funcs := template.FuncMap{
		"day":            func(t time.Time) string { return t.In(loc).Format("Mon 2 Jan 2006") },
		"lastDay":        func(t time.Time) time.Time { return t.In(loc).AddDate(0, 0, -1) },
		"plural":         plural,
		"beforeRegistry": func() string { return beforeRegistryNote(r) },
		"stamp":          func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04 MST") },
		"date":           func(t time.Time) string { return t.In(loc).Format("2006-01-02") },
		"label":          func(m string) string { return metricLabels[m] },
		"metric":         metricValue,
		"delta":          deltaValue,
		"pct":            pct,
		"secs":           secs,
		"num":            num,
		"sub":            func(a, b int) int { return a - b },
		"findings": func(a AgentEntry) string {
			var parts []string
			add := func(n int, one, many string) {
				if n > 0 {
					parts = append(parts, plural(n, one, many))
				}
			}
			add(a.Figures.Violations, "violation", "violations")
			add(a.Figures.Alerts, "alert", "alerts")
			add(a.Unused, "unused grant", "unused grants")
			add(a.Repeated, "repeatedly denied action", "repeatedly denied actions")
			add(a.Ungranted, "attempt without a grant", "attempts without a grant")
			if parts == nil {
				return "—"
			}
			return strings.Join(parts, ", ")
		},
	}
	t, err := template.New("weekly.html.tmpl").Funcs(funcs).ParseFS(templateFS, "templates/weekly.html.tmpl")
	if err != nil {
		return nil, fmt.Errorf("reports: parse template: %w", err)
	}
	var b bytes.Buffer
	data := struct {
		*Weekly
		ChartSrc                template.URL
		ChartWidth, ChartHeight int
	}{r, template.URL(chartSrc), chartWidth, chartHeight}
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("reports: render html: %w", err)
	}
	return b.Bytes(), nil
}

// Text renders a plain-text summary, the mail's alternative to the HTML.
func Text(r *Weekly) []byte {
	var b strings.Builder
	loc := r.Location()
	fmt.Fprintf(&b, "Weekly permission report: %s, %s (%s to %s, %s)\n\n", r.Team, r.Week,
		r.From.In(loc).Format("2006-01-02"), r.To.In(loc).AddDate(0, 0, -1).Format("2006-01-02"), r.TimeZone)
	if r.Partial {
		fmt.Fprintf(&b, "%s\n\n", wrap(PartialNotice(r), 76))
	}
	for _, c := range r.Changes {
		fmt.Fprintf(&b, "  %-26s %12s  (previous %s, %s)\n", metricLabels[c.Metric], metricValue(c.Metric, c.Current),
			metricValue(c.Metric, c.Previous), deltaValue(c.Metric, c.Delta))
	}
	fmt.Fprintf(&b, "\nApprovals: requested %d, granted %d, rejected %d, expired %d, median time to approve %s.\n",
		r.Figures.Escalated, r.Figures.Granted, r.Figures.Rejected, r.Figures.Expired, secs(r.Figures.MedianApproveSeconds))
	if len(r.Denials) > 0 {
		b.WriteString("\nTop denial reasons:\n")
		for _, d := range r.Denials {
			fmt.Fprintf(&b, "  %4d  %s (%s)\n", d.Count, d.Reason, d.PolicyID)
		}
	}
	p := r.Permissions
	if len(p.Unused) > 0 {
		fmt.Fprintf(&b, "\nGranted but unused for %d days (propose to revoke):\n", p.LookbackDays)
		for _, g := range p.Unused {
			fmt.Fprintf(&b, "  %s: %s.%s on %s (tier %d)\n", g.AgentID, g.Tool, g.Action, g.Resource, g.Tier)
		}
	}
	if len(p.Repeated) > 0 {
		b.WriteString("\nRepeatedly denied:\n")
		for _, d := range p.Repeated {
			fmt.Fprintf(&b, "  %s: %s.%s, denials %d\n%s\n", d.AgentID, d.Tool, d.Action, d.Denials, indent(wrap(d.Assessment, 72), "    "))
		}
	}
	if p.BeforeRegistry > 0 {
		fmt.Fprintf(&b, "\n%s\n", wrap(beforeRegistryNote(r), 76))
	}
	if len(p.Ungranted) > 0 {
		b.WriteString("\nAttempted without a grant:\n")
		for _, u := range p.Ungranted {
			fmt.Fprintf(&b, "  %s: %s.%s, attempts %d, executed %d\n    e.g. agentrail trace %s\n", u.AgentID, u.Tool, u.Action, u.Attempts, u.Executed, u.ExampleTrace)
		}
	}
	if r.Violations.Available {
		fmt.Fprintf(&b, "\nGovernance violations: %d\n", r.Violations.Total)
		for _, v := range r.Violations.Items {
			fmt.Fprintf(&b, "  %s %s: %s (%s)\n    %s\n", v.EventTime.In(loc).Format("2006-01-02 15:04"), v.AgentID, v.Kind, v.Severity, v.TraceCmd)
		}
	} else {
		fmt.Fprintf(&b, "\nGovernance violations: %s.\n", r.Violations.Note)
	}
	if r.Alerts.Available {
		fmt.Fprintf(&b, "\nAnomaly alerts: %d\n", r.Alerts.Total)
		for _, a := range r.Alerts.Items {
			agent := a.AgentID
			if agent == "" {
				agent = "—"
			}
			fmt.Fprintf(&b, "  %s %s: %s (%s)\n", a.RaisedAt.In(loc).Format("2006-01-02 15:04"), agent, a.Rule, a.Severity)
			if a.TraceCmd != "" {
				fmt.Fprintf(&b, "    %s\n", a.TraceCmd)
				for _, tr := range a.Traces[1:] {
					fmt.Fprintf(&b, "    also trace %s\n", tr)
				}
			}
		}
	} else {
		fmt.Fprintf(&b, "\nAnomaly alerts: %s.\n", r.Alerts.Note)
	}
	fmt.Fprintf(&b, "\nRetention: %s this week, policy %s.\n", plural(r.Retention.Runs, "run", "runs"), r.Retention.Policy)
	for _, t := range r.Retention.Tiers {
		fmt.Fprintf(&b, "  Tier %d: %d deleted, %d kept by holds.\n", t.Tier, t.Deleted, t.Held)
	}
	b.WriteString("\nThe HTML part and the attached JSON and CSV carry the full report.\n")
	return []byte(b.String())
}

// wrap breaks s at spaces into lines of at most width characters where it
// can (a longer word keeps its own line, unbroken).
func wrap(s string, width int) string {
	var b strings.Builder
	n := 0
	for i, w := range strings.Fields(s) {
		l := utf8.RuneCountInString(w)
		switch {
		case i == 0:
		case n+1+l > width:
			b.WriteByte('\n')
			n = 0
		default:
			b.WriteByte(' ')
			n++
		}
		b.WriteString(w)
		n += l
	}
	return b.String()
}

// beforeRegistryNote says how many actions predate the first registry
// version, and so were not judged against grants.
func beforeRegistryNote(r *Weekly) string {
	p := r.Permissions
	return fmt.Sprintf("Before any registry version: %s before the first registry version took effect (%s) "+
		"were not judged against grants.", plural(p.BeforeRegistry, "action", "actions"),
		p.RegistryFrom.In(r.Location()).Format("2006-01-02 15:04 MST"))
}

// indent prefixes every line of s.
func indent(s, prefix string) string {
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix)
}

// PartialNotice is the notice a partial report opens with: what it covers,
// and that the final report follows.
func PartialNotice(r *Weekly) string {
	loc := r.Location()
	return fmt.Sprintf("PARTIAL REPORT (%s): the week is still in progress and ends %s. "+
		"This report does not replace the final one, which is sent when the week has ended.",
		r.Coverage(), r.To.In(loc).Format("Mon 2 Jan 15:04 MST"))
}

// JSON renders the report as indented JSON.
func JSON(r *Weekly) ([]byte, error) {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("reports: render json: %w", err)
	}
	return append(b, '\n'), nil
}

// CSVHeader is the CSV form's header: one value per row, so every part of
// the report fits one table that spreadsheets can pivot.
var CSVHeader = []string{"week", "team", "section", "agent_id", "key", "metric", "value"}

// CSV renders the report's content as rows of CSVHeader.
func CSV(r *Weekly) ([]byte, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	rows := [][]string{CSVHeader}
	add := func(section, agent, key, metric, value string) {
		rows = append(rows, []string{r.Week, r.Team, section, agent, key, metric, value})
	}
	fnum := func(v *float64) string {
		if v == nil {
			return ""
		}
		return num(*v)
	}
	tstr := func(t time.Time) string {
		if t.IsZero() {
			return ""
		}
		return t.UTC().Format(time.RFC3339)
	}
	figures := func(section, agent string, f Figures) {
		for _, kv := range []struct {
			k string
			v string
		}{
			{"actions", strconv.Itoa(f.Actions)}, {"allowed", strconv.Itoa(f.Allowed)}, {"escalated", strconv.Itoa(f.Escalated)},
			{"denied", strconv.Itoa(f.Denied)}, {"approvals_granted", strconv.Itoa(f.Granted)}, {"approvals_rejected", strconv.Itoa(f.Rejected)},
			{"approvals_expired", strconv.Itoa(f.Expired)}, {"approvals_pending", strconv.Itoa(f.Pending)},
			{"executed", strconv.Itoa(f.Executed)}, {"failed", strconv.Itoa(f.Failed)},
			{"median_approve_seconds", fnum(f.MedianApproveSeconds)}, {"auto_approved_share", fnum(f.AutoApproved)},
			{"escalated_share", fnum(f.EscalatedPct)}, {"denial_rate", fnum(f.DenialRate)},
			{"human_override_rate", fnum(f.OverrideRate)}, {"tool_failure_rate", fnum(f.FailureRate)},
			{"violations", strconv.Itoa(f.Violations)}, {"alerts", strconv.Itoa(f.Alerts)},
		} {
			add(section, agent, "", kv.k, kv.v)
		}
	}
	add("report", "", "", "timezone", r.TimeZone)
	add("report", "", "", "from", tstr(r.From))
	add("report", "", "", "to", tstr(r.To))
	add("report", "", "", "generated_at", tstr(r.GeneratedAt))
	add("report", "", "", "partial", strconv.FormatBool(r.Partial))
	add("report", "", "", "covers_until", tstr(r.CoversUntil))
	add("report", "", "", "recipients", strings.Join(r.Recipients, " "))
	add("report", "", "", "registry_version", strconv.Itoa(r.Registry.Version))
	figures("figures", "", r.Figures)
	figures("previous_week", "", r.Previous)
	for _, c := range r.Changes {
		add("week_over_week", "", c.Metric, "previous", fnum(c.Previous))
		add("week_over_week", "", c.Metric, "current", fnum(c.Current))
		add("week_over_week", "", c.Metric, "delta", fnum(c.Delta))
	}
	for _, a := range r.Actions {
		key := fmt.Sprintf("tier=%d class=%s", a.Tier, a.ActionClass)
		for _, kv := range [][2]string{{"actions", strconv.Itoa(a.Actions)}, {"allowed", strconv.Itoa(a.Allowed)},
			{"escalated", strconv.Itoa(a.Escalated)}, {"denied", strconv.Itoa(a.Denied)},
			{"executed", strconv.Itoa(a.Executed)}, {"failed", strconv.Itoa(a.Failed)}} {
			add("actions", "", key, kv[0], kv[1])
		}
	}
	for _, d := range r.Denials {
		add("top_denials", "", d.PolicyID+" | "+d.Reason, "count", strconv.Itoa(d.Count))
	}
	for _, a := range r.Agents {
		add("agent", a.AgentID, "", "owner", a.Owner)
		add("agent", a.AgentID, "", "registered", strconv.FormatBool(a.Registered))
		figures("agent", a.AgentID, a.Figures)
		for _, d := range a.TopDenials {
			add("agent_denials", a.AgentID, d.PolicyID+" | "+d.Reason, "count", strconv.Itoa(d.Count))
		}
	}
	grant := func(section string, g GrantFinding) {
		key := fmt.Sprintf("%s.%s on %s", g.Tool, g.Action, g.Resource)
		add(section, g.AgentID, key, "tier", strconv.Itoa(g.Tier))
		add(section, g.AgentID, key, "granted_since", tstr(g.Since))
		add(section, g.AgentID, key, "proposal", g.Proposal)
	}
	for _, g := range r.Permissions.Unused {
		grant("unused_grant", g)
	}
	for _, g := range r.Permissions.TooNew {
		grant("unused_too_new", g)
	}
	for _, d := range r.Permissions.Repeated {
		key := d.Tool + "." + d.Action
		add("repeatedly_denied", d.AgentID, key, "denials", strconv.Itoa(d.Denials))
		add("repeatedly_denied", d.AgentID, key, "assessment", d.Assessment)
	}
	if r.Permissions.BeforeRegistry > 0 {
		add("before_registry", "", "", "actions", strconv.Itoa(r.Permissions.BeforeRegistry))
		add("before_registry", "", "", "registry_from", tstr(r.Permissions.RegistryFrom))
	}
	for _, u := range r.Permissions.Ungranted {
		key := u.Tool + "." + u.Action
		add("ungranted", u.AgentID, key, "attempts", strconv.Itoa(u.Attempts))
		add("ungranted", u.AgentID, key, "denied", strconv.Itoa(u.Denied))
		add("ungranted", u.AgentID, key, "executed", strconv.Itoa(u.Executed))
		add("ungranted", u.AgentID, key, "example_trace", u.ExampleTrace)
	}
	if !r.Violations.Available {
		add("violations", "", "", "note", r.Violations.Note)
	}
	add("violations", "", "", "total", strconv.Itoa(r.Violations.Total))
	for _, v := range r.Violations.Items {
		for _, kv := range [][2]string{{"kind", v.Kind}, {"severity", v.Severity}, {"trace_id", v.TraceID},
			{"event_time", tstr(v.EventTime)}, {"explanation", v.Explanation}, {"trace_command", v.TraceCmd}} {
			add("violation", v.AgentID, v.ID, kv[0], kv[1])
		}
	}
	if !r.Alerts.Available {
		add("alerts", "", "", "note", r.Alerts.Note)
	}
	add("alerts", "", "", "total", strconv.Itoa(r.Alerts.Total))
	for _, a := range r.Alerts.Items {
		for _, kv := range [][2]string{{"rule", a.Rule}, {"kind", a.Kind}, {"severity", a.Severity},
			{"observed", num(a.Observed)}, {"threshold", num(a.Threshold)}, {"raised_at", tstr(a.RaisedAt)},
			{"trace_ids", strings.Join(a.Traces, " ")}} {
			add("alert", a.AgentID, a.ID, kv[0], kv[1])
		}
	}
	for _, d := range r.Daily {
		add("daily", "", d.Date, fmt.Sprintf("tier%d_actions", d.Tier), strconv.Itoa(d.Actions))
		add("daily", "", d.Date, fmt.Sprintf("tier%d_denials", d.Tier), strconv.Itoa(d.Denials))
	}
	ret := r.Retention
	add("retention", "", "", "policy", ret.Policy)
	add("retention", "", "", "runs", strconv.Itoa(ret.Runs))
	add("retention", "", "", "failed_runs", strconv.Itoa(ret.FailedRuns))
	add("retention", "", "", "last_run", tstr(ret.LastRun))
	for _, t := range ret.Tiers {
		key := fmt.Sprintf("tier=%d", t.Tier)
		for _, kv := range [][2]string{{"kept_for", t.KeptFor}, {"deleted_all_teams", strconv.FormatUint(t.Deleted, 10)},
			{"deleted_this_team", strconv.FormatUint(t.DeletedTeam, 10)}, {"stripped", strconv.FormatUint(t.Stripped, 10)},
			{"kept_by_holds", strconv.FormatUint(t.Held, 10)}, {"range_from", tstr(t.From)}, {"range_to", tstr(t.To)}} {
			add("retention", "", key, kv[0], kv[1])
		}
	}
	for _, h := range ret.ActiveHolds {
		for _, kv := range [][2]string{{"scope", h.Scope}, {"value", h.Value}, {"reason", h.Reason},
			{"set_by", h.SetBy}, {"set_at", tstr(h.SetAt)}} {
			add("legal_hold", "", h.ID, kv[0], kv[1])
		}
	}
	if err := w.WriteAll(rows); err != nil {
		return nil, fmt.Errorf("reports: render csv: %w", err)
	}
	return b.Bytes(), nil
}
