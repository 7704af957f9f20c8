package reports

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/reports/registry"
)

// Builder computes weekly reports from one ClickHouse database.
type Builder struct {
	cfg  Config
	conn driver.Conn
	db   string
	now  func() time.Time
}

// NewBuilder returns a Builder; cfg must have passed Validate. now is the
// clock (GeneratedAt, registry lookups); nil means time.Now.
func NewBuilder(cfg Config, conn driver.Conn, db string, now func() time.Time) *Builder {
	if now == nil {
		now = time.Now
	}
	return &Builder{cfg: cfg, conn: conn, db: db, now: now}
}

// TeamInfo is a team as the reports see it: registry settings, or the
// configured defaults for a team only seen in events.
type TeamInfo struct {
	Name       string
	Location   *time.Location
	Schedule   string
	Recipients []string
	Registered bool
}

// Team returns the team's settings as registered now.
func (b *Builder) Team(ctx context.Context, name string) (TeamInfo, error) {
	teams, err := b.Teams(ctx, time.Time{}, time.Time{})
	if err != nil {
		return TeamInfo{}, err
	}
	for _, t := range teams {
		if t.Name == name {
			return t, nil
		}
	}
	loc, err := loadZone(b.cfg.TimeZone)
	if err != nil {
		return TeamInfo{}, fmt.Errorf("reports: reports.timezone: %w", err)
	}
	return TeamInfo{Name: name, Location: loc, Schedule: b.cfg.Schedule}, nil
}

// Teams returns the registered teams and, when from < to, the teams with
// events in [from, to) too, by name.
func (b *Builder) Teams(ctx context.Context, from, to time.Time) ([]TeamInfo, error) {
	defLoc, err := loadZone(b.cfg.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("reports: reports.timezone: %w", err)
	}
	reg, err := registry.TeamsAt(ctx, b.conn, b.db, b.now())
	if err != nil {
		return nil, err
	}
	byName := map[string]TeamInfo{}
	for _, t := range reg {
		ti := TeamInfo{Name: t.Name, Location: defLoc, Schedule: b.cfg.Schedule, Recipients: t.Recipients, Registered: true}
		if t.TimeZone != "" {
			if ti.Location, err = loadZone(t.TimeZone); err != nil {
				return nil, fmt.Errorf("reports: team %s: timezone: %w", t.Name, err)
			}
		}
		if t.Schedule != "" {
			ti.Schedule = t.Schedule
		}
		byName[t.Name] = ti
	}
	agents, err := registry.AgentsAt(ctx, b.conn, b.db, "", b.now())
	if err != nil {
		return nil, err
	}
	var extra []string
	for _, a := range agents {
		extra = append(extra, a.Team)
	}
	if from.Before(to) {
		rows, err := b.conn.Query(ctx, `SELECT DISTINCT toString(team) FROM `+b.db+`.events
			WHERE event_time >= ? AND event_time < ?`, ts(from), ts(to))
		if err != nil {
			return nil, fmt.Errorf("reports: list teams: %w", err)
		}
		for rows.Next() {
			var t string
			if err := rows.Scan(&t); err != nil {
				rows.Close()
				return nil, fmt.Errorf("reports: list teams: %w", err)
			}
			extra = append(extra, t)
		}
		rows.Close()
	}
	for _, t := range extra {
		if _, ok := byName[t]; !ok && t != "" {
			byName[t] = TeamInfo{Name: t, Location: defLoc, Schedule: b.cfg.Schedule}
		}
	}
	out := make([]TeamInfo, 0, len(byName))
	for _, t := range byName {
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// ts renders t for comparison with DateTime64 columns (clickhouse-go would
// bind a time.Time with second precision).
func ts(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05.000000") }

// traceCTE summarises each trace of a team whose intent falls in [from, to):
// one row per action, its decision, final approval and result. Events up to
// a day after the week still count (an approval or result of a late-week
// action). Five arguments: team, from, to+1d, from, to.
//
// It reads events without FINAL: a re-delivered event is a second copy of
// the same row until a merge collapses it, and every aggregate below gives
// the same value with or without an extra copy of a row (any, min, max,
// argMax; intents is only compared with 0), so each trace still counts
// once. FINAL would merge the week's parts on every read and dominated the
// report's time.
const traceCTE = `t AS (
	SELECT trace_id,
		anyIf(toString(agent_id), event_type = 'intent') AS agent,
		anyIf(tier, event_type = 'intent') AS itier,
		anyIf(toString(action_class), event_type = 'intent') AS class,
		anyIf(toString(tool), event_type = 'intent') AS itool,
		anyIf(toString(action), event_type = 'intent') AS iaction,
		anyIf(target, event_type = 'intent') AS itarget,
		minIf(event_time, event_type = 'intent') AS intent_time,
		anyIf(toString(outcome), event_type = 'policy_decision') AS decision,
		anyIf(toString(policy_id), event_type = 'policy_decision') AS policy,
		anyIf(reason, event_type = 'policy_decision') AS why,
		minIf(event_time, event_type = 'policy_decision') AS decided_at,
		argMaxIf(toString(approval_status), event_time, event_type = 'approval' AND approval_status != 'requested') AS approval,
		maxIf(event_time, event_type = 'approval' AND approval_status != 'requested') AS approved_at,
		argMaxIf(toString(result_status), event_time, event_type = 'result') AS result,
		countIf(event_type = 'intent') AS intents
	FROM {db}.events
	WHERE team = ? AND event_time >= ? AND event_time < ?
	GROUP BY trace_id
	HAVING intents > 0 AND intent_time >= ? AND intent_time < ?)`

func (b *Builder) sql(q string) string { return strings.ReplaceAll(q, "{db}", b.db) }

func traceArgs(team string, from, to time.Time) []any {
	return []any{team, ts(from), ts(to.Add(24 * time.Hour)), ts(from), ts(to)}
}

// Build computes team's report for week.
func (b *Builder) Build(ctx context.Context, team TeamInfo, week Week) (*Weekly, error) {
	loc := team.Location
	from, to := week.Bounds(loc)
	r := &Weekly{
		Team: team.Name, Week: week.String(), TimeZone: loc.String(), From: from.UTC(), To: to.UTC(),
		GeneratedAt: b.now().UTC().Truncate(time.Second), Recipients: team.Recipients,
		Changes: []Change{}, Actions: []ActionRow{}, Denials: []DenialRow{}, Agents: []AgentEntry{},
	}
	// A report made before the week's end covers it up to now only.
	r.CoversUntil = r.To
	if r.GeneratedAt.Before(r.To) {
		r.Partial, r.CoversUntil = true, r.GeneratedAt
	}
	if r.Recipients == nil {
		r.Recipients = []string{}
	}
	agents := map[string]*AgentEntry{}
	agent := func(id string) *AgentEntry {
		a, ok := agents[id]
		if !ok {
			a = &AgentEntry{AgentID: id, TopDenials: []DenialRow{}}
			agents[id] = a
		}
		return a
	}

	// One pass over the week's traces: figures per agent, per tier and
	// class and for the team, denials, daily counts, ungranted actions.
	first, err := b.firstRegistry(ctx)
	if err != nil {
		return nil, err
	}
	wf, err := b.week(ctx, team.Name, from, to, loc, first)
	if err != nil {
		return nil, err
	}
	r.Figures, r.Actions = wf.total, wf.actions
	for id, f := range wf.agents {
		agent(id).Figures = f
	}
	pfrom, pto := week.Prev().Bounds(loc)
	if r.Previous, err = b.figures(ctx, team.Name, pfrom, pto); err != nil {
		return nil, err
	}

	// Denials: team top reasons, per agent top reasons, repeated denials.
	denials := wf.denials
	r.Denials = topDenials(denials, b.cfg.Top)
	perAgent := map[string][]denialKey{}
	for _, d := range denials {
		perAgent[d.agent] = append(perAgent[d.agent], d)
	}
	for id, ds := range perAgent {
		agent(id).TopDenials = topDenials(ds, 3)
	}

	// Registry: owners, grants, unused and ungranted.
	if err := b.permissions(ctx, r, team.Name, from, to, denials, wf.ungranted, agent); err != nil {
		return nil, err
	}
	if r.Registry.Loaded && wf.beforeRegistry > 0 {
		r.Permissions.BeforeRegistry, r.Permissions.RegistryFrom = wf.beforeRegistry, first.UTC()
	}

	// Violations and alerts, where those tables exist.
	if err := b.violations(ctx, r, team.Name, from, to, pfrom, pto, agent); err != nil {
		return nil, err
	}
	if err := b.alerts(ctx, r, team.Name, from, to, pfrom, pto, agent); err != nil {
		return nil, err
	}
	r.Changes = changes(r.Previous, r.Figures)

	r.Daily = daily(wf.daily, week, loc, r.CoversUntil)
	if r.Retention, err = b.retentionSummary(ctx, team.Name, from, to); err != nil {
		return nil, err
	}

	for _, a := range agents {
		r.Agents = append(r.Agents, *a)
	}
	sort.Slice(r.Agents, func(i, j int) bool { return r.Agents[i].AgentID < r.Agents[j].AgentID })
	return r, nil
}

// figureCols are the aggregates of Figures over t's traces, in the order
// figuresFrom reads them: ten counts and the median approval time.
const figureCols = `count(), countIf(decision = 'allow'), countIf(decision = 'require_approval'), countIf(decision = 'deny'),
			countIf(approval = 'granted'), countIf(approval = 'rejected'), countIf(approval = 'expired'),
			countIf(decision = 'require_approval' AND approval = ''),
			countIf(result IN ('success', 'failure', 'error')), countIf(result IN ('failure', 'error')),
			quantileExactIf(0.5)(toFloat64(dateDiff('millisecond', decided_at, approved_at)) / 1000,
				approval = 'granted' AND decision = 'require_approval')`

// figuresFrom makes Figures of figureCols' values.
func figuresFrom(n *[10]uint64, median float64) Figures {
	f := Figures{Actions: int(n[0]), Allowed: int(n[1]), Escalated: int(n[2]), Denied: int(n[3]),
		Granted: int(n[4]), Rejected: int(n[5]), Expired: int(n[6]), Pending: int(n[7]), Executed: int(n[8]), Failed: int(n[9])}
	if !math.IsNaN(median) {
		m := math.Round(median*10) / 10
		f.MedianApproveSeconds = &m
	}
	f.ratios()
	return f
}

// figures returns the team's figures for [from, to) (the previous week's,
// for the comparison).
func (b *Builder) figures(ctx context.Context, team string, from, to time.Time) (Figures, error) {
	var n [10]uint64
	var median float64
	if err := b.conn.QueryRow(ctx, b.sql(`WITH `+traceCTE+` SELECT `+figureCols+` FROM t`), traceArgs(team, from, to)...).
		Scan(&n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7], &n[8], &n[9], &median); err != nil {
		return Figures{}, fmt.Errorf("reports: figures of %s: %w", team, err)
	}
	return figuresFrom(&n, median), nil
}

// weekFacts is what the report takes from one pass over the week's traces.
type weekFacts struct {
	total     Figures
	agents    map[string]Figures
	actions   []ActionRow       // by tier and class
	denials   []denialKey       // by agent, tool, action, policy, reason
	daily     map[string][2]int // "date/tier" -> actions, denials
	ungranted []Ungranted       // most attempts first
	// beforeRegistry counts the actions whose intent predates the first
	// registry version: nothing was granted or refused then, so they are
	// not "without a grant".
	beforeRegistry int
}

// firstRegistry is when the first registry version took effect; zero
// without one.
func (b *Builder) firstRegistry(ctx context.Context) (time.Time, error) {
	var n uint64
	var first time.Time
	if err := b.conn.QueryRow(ctx, `SELECT count(), min(effective_at) FROM `+b.db+`.registry_versions`).Scan(&n, &first); err != nil {
		return time.Time{}, fmt.Errorf("reports: read registry versions: %w", err)
	}
	if n == 0 {
		return time.Time{}, nil
	}
	return first, nil
}

// The grouping sets of the week's query, as grouping() numbers them over
// (agent, itier, class, itool, iaction, policy, why, day): a bit is set
// for each column the set leaves out, agent the highest.
const (
	setAgent     = 0b0111_1111 // (agent)
	setTierClass = 0b1001_1111 // (itier, class)
	setTeam      = 0b1111_1111 // ()
	setDenials   = 0b0110_0001 // (agent, itool, iaction, policy, why)
	setDaily     = 0b1011_1110 // (day, itier)
	setUngranted = 0b0110_0111 // (agent, itool, iaction)
)

// week computes, in one scan of the team's events, everything the report
// counts over the week's traces. Each trace carries whether a grant of its
// agent, tool and action covered its target at the intent's time (grants
// as stored, whether or not a registry version is in force; the caller
// uses the ungranted actions only when a registry is loaded). An intent
// before first (the first registry version) is counted apart, not as
// ungranted.
func (b *Builder) week(ctx context.Context, team string, from, to time.Time, loc *time.Location, first time.Time) (weekFacts, error) {
	q := b.sql(`WITH ` + traceCTE + `,
	tg AS (
		SELECT t.*, toString(toDate(t.intent_time, ?)) AS day,
			arrayExists(x -> x.1 <= t.intent_time AND t.intent_time < x.2 AND like(t.itarget, x.3), g.grants) AS granted,
			t.intent_time < ? AS prereg, granted OR prereg AS covered
		FROM t LEFT JOIN (
			SELECT agent_id, toString(tool) AS tool, toString(action) AS action,
				groupArray((valid_from, valid_to, resource_like)) AS grants
			FROM {db}.registry_grants FINAL WHERE team = ? AND valid_from < ? AND valid_to > ?
			GROUP BY agent_id, tool, action) AS g
		ON g.agent_id = t.agent AND g.tool = t.itool AND g.action = t.iaction)
	SELECT toUInt8(grouping(agent, itier, class, itool, iaction, policy, why, day)) AS g,
		agent, itier, class, itool, iaction, policy, why, day,
		` + figureCols + `,
		countIf(NOT covered), countIf(NOT covered AND decision = 'deny'),
		countIf(NOT covered AND result IN ('success', 'failure', 'error')),
		minIf(itarget, NOT covered), minIf(trace_id, NOT covered), countIf(prereg)
	FROM tg
	GROUP BY GROUPING SETS ((agent), (itier, class), (), (agent, itool, iaction, policy, why), (day, itier), (agent, itool, iaction))
	ORDER BY g, agent, itier, class, itool, iaction, policy, why, day`)
	if first.IsZero() {
		first = time.Unix(0, 0) // no registry: no intent predates it
	}
	args := append(traceArgs(team, from, to), loc.String(), ts(first), team, ts(to), ts(from))
	wf := weekFacts{agents: map[string]Figures{}, actions: []ActionRow{}, daily: map[string][2]int{}, ungranted: []Ungranted{}}
	rows, err := b.conn.Query(ctx, q, args...)
	if err != nil {
		return wf, fmt.Errorf("reports: week of %s: %w", team, err)
	}
	defer rows.Close()
	for rows.Next() {
		var g, tier uint8
		var agent, class, tool, action, policy, why, day string
		var n [10]uint64
		var median float64
		var ung, ungDenied, ungExecuted uint64
		var exTarget, exTrace string
		var prereg uint64
		if err := rows.Scan(&g, &agent, &tier, &class, &tool, &action, &policy, &why, &day,
			&n[0], &n[1], &n[2], &n[3], &n[4], &n[5], &n[6], &n[7], &n[8], &n[9], &median,
			&ung, &ungDenied, &ungExecuted, &exTarget, &exTrace, &prereg); err != nil {
			return wf, fmt.Errorf("reports: week of %s: %w", team, err)
		}
		switch g {
		case setTeam:
			wf.total = figuresFrom(&n, median)
			wf.beforeRegistry = int(prereg)
		case setAgent:
			wf.agents[agent] = figuresFrom(&n, median)
		case setTierClass:
			f := figuresFrom(&n, median)
			wf.actions = append(wf.actions, ActionRow{Tier: int(tier), ActionClass: class, Actions: f.Actions, Allowed: f.Allowed,
				Escalated: f.Escalated, Denied: f.Denied, Executed: f.Executed, Failed: f.Failed})
		case setDenials:
			if n[3] > 0 {
				wf.denials = append(wf.denials, denialKey{agent: agent, tool: tool, action: action, policy: policy, reason: why, n: int(n[3])})
			}
		case setDaily:
			wf.daily[fmt.Sprintf("%s/%d", day, tier)] = [2]int{int(n[0]), int(n[3])}
		case setUngranted:
			if ung > 0 {
				wf.ungranted = append(wf.ungranted, Ungranted{AgentID: agent, Tool: tool, Action: action, Attempts: int(ung),
					Denied: int(ungDenied), Executed: int(ungExecuted), ExampleTarget: exTarget, ExampleTrace: exTrace})
			}
		default:
			return wf, fmt.Errorf("reports: week of %s: unexpected grouping set %#b", team, g)
		}
	}
	if err := rows.Err(); err != nil {
		return wf, fmt.Errorf("reports: week of %s: %w", team, err)
	}
	sort.Slice(wf.ungranted, func(i, j int) bool {
		a, c := wf.ungranted[i], wf.ungranted[j]
		if a.Attempts != c.Attempts {
			return a.Attempts > c.Attempts
		}
		return a.AgentID < c.AgentID || a.AgentID == c.AgentID && (a.Tool < c.Tool || a.Tool == c.Tool && a.Action < c.Action)
	})
	return wf, nil
}

// ratios fills the autonomy figures from the counts.
func (f *Figures) ratios() {
	decided := f.Allowed + f.Escalated + f.Denied
	f.AutoApproved = ratio(f.Allowed, decided)
	f.EscalatedPct = ratio(f.Escalated, decided)
	f.DenialRate = ratio(f.Denied, decided)
	f.OverrideRate = ratio(f.Rejected, f.Granted+f.Rejected)
	f.FailureRate = ratio(f.Failed, f.Executed)
}

func ratio(n, d int) *float64 {
	if d == 0 {
		return nil
	}
	v := math.Round(float64(n)/float64(d)*10000) / 10000
	return &v
}

type denialKey struct {
	agent, tool, action, policy, reason string
	n                                   int
}

// topDenials sums denials by policy and reason, most frequent first.
func topDenials(ds []denialKey, n int) []DenialRow {
	sum := map[[2]string]int{}
	for _, d := range ds {
		sum[[2]string{d.policy, d.reason}] += d.n
	}
	out := []DenialRow{}
	for k, c := range sum {
		out = append(out, DenialRow{PolicyID: k[0], Reason: k[1], Count: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		if out[i].PolicyID != out[j].PolicyID {
			return out[i].PolicyID < out[j].PolicyID
		}
		return out[i].Reason < out[j].Reason
	})
	if len(out) > n {
		out = out[:n]
	}
	return out
}

// permissions compares the week (and the lookback window) with the
// registry's grants as they were in force at each instant.
func (b *Builder) permissions(ctx context.Context, r *Weekly, team string, from, to time.Time, denials []denialKey, ungranted []Ungranted, agent func(string) *AgentEntry) error {
	p := &r.Permissions
	p.LookbackDays = b.cfg.UnusedLookbackDays
	p.LookbackFrom = to.AddDate(0, 0, -b.cfg.UnusedLookbackDays).UTC()
	p.Unused, p.TooNew, p.Repeated, p.Ungranted = []GrantFinding{}, []GrantFinding{}, []RepeatedDenial{}, []Ungranted{}

	var version uint32
	var applied time.Time
	if err := b.conn.QueryRow(ctx, `SELECT toUInt32(max(version)), max(applied_at) FROM `+b.db+`.registry_versions
		WHERE effective_at < ?`, ts(to)).Scan(&version, &applied); err != nil {
		return fmt.Errorf("reports: read registry version: %w", err)
	}
	end := to.Add(-time.Millisecond) // the week's last instant
	regAgents, err := registry.AgentsAt(ctx, b.conn, b.db, team, end)
	if err != nil {
		return err
	}
	for _, a := range regAgents {
		e := agent(a.ID)
		e.Owner, e.Registered = a.Owner, true
	}
	r.Registry = RegistryInfo{Loaded: version > 0, Version: int(version), Agents: len(regAgents)}
	if version > 0 {
		r.Registry.Applied = applied.UTC()
	}

	// Repeated denials need no registry to be found; the assessment does.
	repeated := map[[3]string]*RepeatedDenial{}
	var keys [][3]string
	for _, d := range denials {
		k := [3]string{d.agent, d.tool, d.action}
		rd, ok := repeated[k]
		if !ok {
			rd = &RepeatedDenial{AgentID: d.agent, Tool: d.tool, Action: d.action}
			repeated[k] = rd
			keys = append(keys, k)
		}
		rd.Denials += d.n
		rd.Reasons = append(rd.Reasons, DenialRow{PolicyID: d.policy, Reason: d.reason, Count: d.n})
	}

	grants, err := registry.Grants(ctx, b.conn, b.db, team, p.LookbackFrom, to)
	if err != nil {
		return err
	}
	heldInWeek := map[[3]string]bool{}
	for _, g := range grants {
		if g.ValidFrom.Before(to) && g.ValidTo.After(from) {
			heldInWeek[[3]string{g.AgentID, g.Tool, g.Action}] = true
		}
		if g.ValidFrom.Before(to) && g.ValidTo.After(end) {
			r.Registry.Grants++
		}
	}
	for _, k := range keys {
		rd := repeated[k]
		if rd.Denials < b.cfg.RepeatedDenials {
			continue
		}
		switch {
		case !r.Registry.Loaded:
			rd.Assessment = "unknown (no registry loaded)"
		case heldInWeek[k]:
			rd.Assessment = "under-scoped: the agent holds a grant for this action; widen it or fix the agent"
		default:
			rd.Assessment = "probing: the agent holds no grant for this action"
		}
		sort.Slice(rd.Reasons, func(i, j int) bool {
			if rd.Reasons[i].Count != rd.Reasons[j].Count {
				return rd.Reasons[i].Count > rd.Reasons[j].Count
			}
			return rd.Reasons[i].Reason < rd.Reasons[j].Reason
		})
		if len(rd.Reasons) > 3 {
			rd.Reasons = rd.Reasons[:3]
		}
		p.Repeated = append(p.Repeated, *rd)
		agent(rd.AgentID).Repeated++
	}
	sort.Slice(p.Repeated, func(i, j int) bool {
		a, c := p.Repeated[i], p.Repeated[j]
		if a.Denials != c.Denials {
			return a.Denials > c.Denials
		}
		return a.AgentID+a.Tool+a.Action < c.AgentID+c.Tool+c.Action
	})
	if !r.Registry.Loaded {
		return nil
	}

	// Uses of each grant row inside its own validity and the lookback
	// window: an intent of the agent, tool and action whose target matches
	// the resource pattern. Only whether a grant was used matters, so the
	// query reads events without FINAL (a re-delivered intent is a use all
	// the same) and returns the used grants only; the grants, a few per
	// agent, are the join's right (hashed) side.
	uses := map[string]uint64{}
	rows, err := b.conn.Query(ctx, `SELECT g.grant_key, g.valid_from, count()
		FROM (SELECT agent_id, tool, action, target, event_time
			FROM `+b.db+`.events WHERE team = ? AND event_type = 'intent' AND event_time >= ? AND event_time < ?) AS i
		INNER JOIN (SELECT grant_key, toLowCardinality(agent_id) AS agent_id, tool, action, resource_like, valid_from, valid_to
			FROM `+b.db+`.registry_grants FINAL WHERE team = ? AND valid_from < ? AND valid_to > ?) AS g
		ON i.agent_id = g.agent_id AND i.tool = g.tool AND i.action = g.action
		WHERE i.event_time >= g.valid_from AND i.event_time < g.valid_to AND like(i.target, g.resource_like)
		GROUP BY g.grant_key, g.valid_from`,
		team, ts(p.LookbackFrom), ts(to), team, ts(to), ts(p.LookbackFrom))
	if err != nil {
		return fmt.Errorf("reports: grant use of %s: %w", team, err)
	}
	for rows.Next() {
		var key string
		var vf time.Time
		var n uint64
		if err := rows.Scan(&key, &vf, &n); err != nil {
			rows.Close()
			return fmt.Errorf("reports: grant use of %s: %w", team, err)
		}
		uses[key+vf.UTC().Format(time.RFC3339Nano)] = n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("reports: grant use of %s: %w", team, err)
	}
	for _, g := range grants {
		if !g.ValidTo.After(end) {
			continue // revoked by the week's end: nothing to propose
		}
		if uses[g.Key+g.ValidFrom.UTC().Format(time.RFC3339Nano)] > 0 {
			continue
		}
		f := GrantFinding{AgentID: g.AgentID, Tool: g.Tool, Action: g.Action, Resource: g.Resource, Tier: g.Tier,
			Since: g.ValidFrom.UTC(), Version: g.Version}
		if g.ValidFrom.After(p.LookbackFrom) {
			f.Proposal = fmt.Sprintf("granted %s, unused so far; judge after %s", g.ValidFrom.In(r.Location()).Format("2006-01-02"),
				g.ValidFrom.AddDate(0, 0, b.cfg.UnusedLookbackDays).In(r.Location()).Format("2006-01-02"))
			p.TooNew = append(p.TooNew, f)
			continue
		}
		f.Proposal = fmt.Sprintf("revoke: unused for %d days", b.cfg.UnusedLookbackDays)
		p.Unused = append(p.Unused, f)
		agent(g.AgentID).Unused++
	}

	// Actions with no grant in force at the intent's time (from the
	// week's pass).
	p.Ungranted = ungranted
	for _, u := range ungranted {
		agent(u.AgentID).Ungranted += u.Attempts
	}
	return nil
}

// daily lists the week's actions and denials per local day and tier (got,
// by "date/tier"), zeros included, for the days that have begun by until:
// a day still to come has no count, not a zero.
func daily(got map[string][2]int, week Week, loc *time.Location, until time.Time) []DailyRow {
	out := []DailyRow{}
	for _, d := range week.Days(loc) {
		if !d.Before(until) {
			break
		}
		for tier := 1; tier <= 3; tier++ {
			day := d.Format("2006-01-02")
			c := got[fmt.Sprintf("%s/%d", day, tier)]
			out = append(out, DailyRow{Date: day, Tier: tier, Actions: c[0], Denials: c[1]})
		}
	}
	return out
}

// changes compares the main figures with the previous week.
func changes(prev, cur Figures) []Change {
	n := func(v int) *float64 { f := float64(v); return &f }
	rows := []struct {
		name      string
		prev, cur *float64
	}{
		{"actions", n(prev.Actions), n(cur.Actions)},
		{"denied", n(prev.Denied), n(cur.Denied)},
		{"escalated", n(prev.Escalated), n(cur.Escalated)},
		{"auto_approved_share", prev.AutoApproved, cur.AutoApproved},
		{"escalated_share", prev.EscalatedPct, cur.EscalatedPct},
		{"denial_rate", prev.DenialRate, cur.DenialRate},
		{"human_override_rate", prev.OverrideRate, cur.OverrideRate},
		{"tool_failure_rate", prev.FailureRate, cur.FailureRate},
		{"median_approve_seconds", prev.MedianApproveSeconds, cur.MedianApproveSeconds},
		{"violations", n(prev.Violations), n(cur.Violations)},
		{"alerts", n(prev.Alerts), n(cur.Alerts)},
	}
	out := make([]Change, 0, len(rows))
	for _, r := range rows {
		c := Change{Metric: r.name, Previous: r.prev, Current: r.cur}
		if r.prev != nil && r.cur != nil {
			d := math.Round((*r.cur-*r.prev)*10000) / 10000
			c.Delta = &d
		}
		out = append(out, c)
	}
	return out
}
