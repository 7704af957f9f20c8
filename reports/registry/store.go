package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/agentrail/agentrail/signing"
)

// OpenEnd is the valid_to of a row still in force. (Not later: the
// ClickHouse client converts times through int64 nanoseconds, which end in
// 2262.)
var OpenEnd = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)

// TeamRow is a team as registered during [ValidFrom, ValidTo).
type TeamRow struct {
	Team
	ValidFrom, ValidTo time.Time
	Version            int // the registry version that opened the row
}

// AgentRow is an agent as registered during [ValidFrom, ValidTo).
type AgentRow struct {
	ID, Team, Owner, Description string
	ValidFrom, ValidTo           time.Time
	Version                      int // the registry version that opened the row
}

// GrantRow is a grant in force during [ValidFrom, ValidTo).
type GrantRow struct {
	Key, AgentID, Team, Tool, Action, Resource string
	Tier                                       int
	PerHour, PerDay                            int
	ApprovalRequired                           bool
	ApproverRoles                              []string
	ValidFrom, ValidTo                         time.Time
	Version                                    int // the registry version that opened the row
}

// KeyRow is an agent's signing key as registered during [ValidFrom,
// ValidTo): its id, algorithm, public key (ed25519) or where its secret is
// read from (hmac-sha256), and its own validity for signatures. Never the
// secret itself.
type KeyRow struct {
	KeyID, AgentID, Team, Alg, PublicKey, SecretSource string
	NotBefore, NotAfter                                *time.Time
	ValidFrom, ValidTo                                 time.Time
	Version                                            int // the registry version that opened the row
}

// Open reports whether the row is still in force.
func (g GrantRow) Open() bool { return !g.ValidTo.Before(OpenEnd) }

// Label is how a report names the grant: tool.action on resource.
func (g GrantRow) Label() string { return fmt.Sprintf("%s.%s on %s", g.Tool, g.Action, g.Resource) }

// ApplyOptions say when the applied registry takes effect and who applied it.
type ApplyOptions struct {
	// AsOf is when the new rows take effect (zero: now). It must be later
	// than every earlier apply, so history is never rewritten; a first
	// load may be backdated to when the grants really began.
	AsOf   time.Time
	By     string // who applied it
	Source string // file name, for the record
	Now    func() time.Time
}

// Summary is what an apply changed.
type Summary struct {
	Version                int
	EffectiveAt            time.Time
	Teams, Agents, Grants  int // in force after the apply
	Keys                   int
	Opened, Closed         int // rows opened and closed, all kinds
	Added, Revoked, Change []string
}

// Apply loads a validated registry into database db as version N+1: rows
// that are new are opened, rows no longer present are closed, rows whose
// attributes changed are closed and reopened, all as of opts.AsOf. Re-running
// an interrupted apply converges: it diffs against what is stored.
func Apply(ctx context.Context, conn driver.Conn, db string, r *Registry, opts ApplyOptions) (Summary, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := opts.Now().UTC().Truncate(time.Millisecond)
	asOf := opts.AsOf.UTC().Truncate(time.Millisecond)
	if asOf.IsZero() {
		asOf = now
	}
	var s Summary
	var version uint32
	var last time.Time
	if err := conn.QueryRow(ctx, `SELECT toUInt32(max(version)), greatest(
			(SELECT max(effective_at) FROM `+db+`.registry_versions),
			(SELECT max(valid_from) FROM `+db+`.registry_grants),
			(SELECT max(valid_from) FROM `+db+`.registry_agents),
			(SELECT max(valid_from) FROM `+db+`.registry_teams),
			(SELECT maxOrDefault(valid_to) FROM `+db+`.registry_grants WHERE valid_to < '2200-01-01'))
		FROM `+db+`.registry_versions`).Scan(&version, &last); err != nil {
		return s, fmt.Errorf("registry: read last version: %w", err)
	}
	if !last.IsZero() && last.Unix() > 0 && !asOf.After(last) {
		return s, fmt.Errorf("registry: as-of %s is not after the last change at %s; history is never rewritten", asOf.Format(time.RFC3339Nano), last.UTC().Format(time.RFC3339Nano))
	}
	version++
	s.Version, s.EffectiveAt = int(version), asOf

	// Teams.
	curTeams, err := openTeams(ctx, conn, db)
	if err != nil {
		return s, err
	}
	var teamRows []TeamRow
	wantTeams := map[string]Team{}
	for _, t := range r.Teams {
		wantTeams[t.Name] = t
	}
	for name, t := range wantTeams {
		cur, ok := curTeams[name]
		if ok && teamAttrs(cur.Team) == teamAttrs(t) {
			continue
		}
		if ok {
			cur.ValidTo = asOf
			teamRows = append(teamRows, cur)
			s.Change = append(s.Change, "team "+name)
		} else {
			s.Added = append(s.Added, "team "+name)
		}
		teamRows = append(teamRows, TeamRow{Team: t, ValidFrom: asOf, ValidTo: OpenEnd, Version: int(version)})
	}
	for name, cur := range curTeams {
		if _, ok := wantTeams[name]; !ok {
			cur.ValidTo = asOf
			teamRows = append(teamRows, cur)
			s.Revoked = append(s.Revoked, "team "+name)
		}
	}

	// Agents.
	curAgents, err := openAgents(ctx, conn, db)
	if err != nil {
		return s, err
	}
	var agentRows []AgentRow
	wantAgents := map[string]AgentRow{}
	for _, a := range r.Agents {
		wantAgents[a.ID] = AgentRow{ID: a.ID, Team: a.Team, Owner: a.Owner, Description: a.Description}
	}
	for id, a := range wantAgents {
		cur, ok := curAgents[id]
		if ok && cur.Team == a.Team && cur.Owner == a.Owner && cur.Description == a.Description {
			continue
		}
		if ok {
			cur.ValidTo = asOf
			agentRows = append(agentRows, cur)
			s.Change = append(s.Change, "agent "+id)
		} else {
			s.Added = append(s.Added, "agent "+id)
		}
		a.ValidFrom, a.ValidTo, a.Version = asOf, OpenEnd, int(version)
		agentRows = append(agentRows, a)
	}
	for id, cur := range curAgents {
		if _, ok := wantAgents[id]; !ok {
			cur.ValidTo = asOf
			agentRows = append(agentRows, cur)
			s.Revoked = append(s.Revoked, "agent "+id)
		}
	}

	// Grants.
	curGrants, err := openGrants(ctx, conn, db)
	if err != nil {
		return s, err
	}
	var grantRows []GrantRow
	wantGrants := map[string]GrantRow{}
	for _, a := range r.Agents {
		for _, g := range a.Grants {
			if g.Shadow {
				continue // proposed, not in force: the policy engine records what it would decide
			}
			row := GrantRow{AgentID: a.ID, Team: a.Team, Tool: g.Tool, Action: g.Action, Resource: g.Resource, Tier: g.Tier}
			if g.RateLimit != nil {
				row.PerHour, row.PerDay = g.RateLimit.PerHour, g.RateLimit.PerDay
			}
			if g.Approval != nil {
				row.ApprovalRequired = g.Approval.Required
				row.ApproverRoles = append([]string(nil), g.Approval.ApproverRoles...)
				sort.Strings(row.ApproverRoles)
			}
			row.Key = GrantKey(a.ID, g.Tool, g.Action, g.Resource)
			wantGrants[row.Key] = row
		}
	}
	for key, g := range wantGrants {
		cur, ok := curGrants[key]
		if ok && grantAttrs(cur) == grantAttrs(g) {
			continue
		}
		if ok {
			cur.ValidTo = asOf
			grantRows = append(grantRows, cur)
			s.Change = append(s.Change, "grant "+g.AgentID+" "+g.Label())
		} else {
			s.Added = append(s.Added, "grant "+g.AgentID+" "+g.Label())
		}
		g.ValidFrom, g.ValidTo, g.Version = asOf, OpenEnd, int(version)
		grantRows = append(grantRows, g)
	}
	for key, cur := range curGrants {
		if _, ok := wantGrants[key]; !ok {
			cur.ValidTo = asOf
			grantRows = append(grantRows, cur)
			s.Revoked = append(s.Revoked, "grant "+cur.AgentID+" "+cur.Label())
		}
	}
	// Keys.
	curKeys, err := openKeys(ctx, conn, db)
	if err != nil {
		return s, err
	}
	var keyRows []KeyRow
	wantKeys := map[string]KeyRow{}
	for _, a := range r.Agents {
		for _, k := range a.Keys {
			wantKeys[k.ID] = keyRow(a, k)
		}
	}
	for id, k := range wantKeys {
		cur, ok := curKeys[id]
		if ok && keyAttrs(cur) == keyAttrs(k) {
			continue
		}
		if ok {
			cur.ValidTo = asOf
			keyRows = append(keyRows, cur)
			s.Change = append(s.Change, "key "+k.AgentID+" "+id)
		} else {
			s.Added = append(s.Added, "key "+k.AgentID+" "+id)
		}
		k.ValidFrom, k.ValidTo, k.Version = asOf, OpenEnd, int(version)
		keyRows = append(keyRows, k)
	}
	for id, cur := range curKeys {
		if _, ok := wantKeys[id]; !ok {
			cur.ValidTo = asOf
			keyRows = append(keyRows, cur)
			s.Revoked = append(s.Revoked, "key "+cur.AgentID+" "+id)
		}
	}

	sort.Strings(s.Added)
	sort.Strings(s.Revoked)
	sort.Strings(s.Change)
	keyTo := make([]time.Time, len(keyRows))
	for i, k := range keyRows {
		keyTo[i] = k.ValidTo
	}
	for _, rows := range [][]time.Time{teamValidTo(teamRows), agentValidTo(agentRows), grantValidTo(grantRows), keyTo} {
		for _, to := range rows {
			if to.Before(OpenEnd) {
				s.Closed++
			} else {
				s.Opened++
			}
		}
	}
	s.Teams, s.Agents, s.Grants, s.Keys = len(wantTeams), len(wantAgents), len(wantGrants), len(wantKeys)

	if err := insertTeams(ctx, conn, db, teamRows, version); err != nil {
		return s, err
	}
	if err := insertAgents(ctx, conn, db, agentRows, version); err != nil {
		return s, err
	}
	if err := insertGrants(ctx, conn, db, grantRows, version); err != nil {
		return s, err
	}
	if err := insertKeys(ctx, conn, db, keyRows, version); err != nil {
		return s, err
	}
	sum := sha256.Sum256([]byte(r.canonical()))
	if err := conn.Exec(ctx, `INSERT INTO `+db+`.registry_versions
		(version, applied_at, effective_at, applied_by, source, sha256, teams, agents, grants, opened, closed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		version, now, asOf, opts.By, opts.Source, hex.EncodeToString(sum[:]),
		uint32(s.Teams), uint32(s.Agents), uint32(s.Grants), uint32(s.Opened), uint32(s.Closed)); err != nil {
		return s, fmt.Errorf("registry: record version %d: %w", version, err)
	}
	return s, nil
}

// GrantKey identifies a grant across versions: its agent, tool, action and
// resource pattern. Tier, limits and approvals are attributes.
func GrantKey(agentID, tool, action, resource string) string {
	h := sha256.Sum256([]byte(agentID + "\x00" + tool + "\x00" + action + "\x00" + resource))
	return hex.EncodeToString(h[:12])
}

func teamAttrs(t Team) string {
	rc := append([]string(nil), t.Recipients...)
	sort.Strings(rc)
	return t.TimeZone + "\x00" + t.Schedule + "\x00" + strings.Join(rc, ",")
}

func grantAttrs(g GrantRow) string {
	return fmt.Sprintf("%s|%d|%d|%d|%t|%s", g.Team, g.Tier, g.PerHour, g.PerDay, g.ApprovalRequired, strings.Join(g.ApproverRoles, ","))
}

func (r *Registry) canonical() string {
	var b strings.Builder
	for _, t := range r.Teams {
		fmt.Fprintf(&b, "team %s %s\n", t.Name, teamAttrs(t))
	}
	for _, a := range r.Agents {
		fmt.Fprintf(&b, "agent %s %s %s %q\n", a.ID, a.Team, a.Owner, a.Description)
		for _, g := range a.Grants {
			fmt.Fprintf(&b, "  grant %s %s %q %d %+v %+v", g.Tool, g.Action, g.Resource, g.Tier, g.RateLimit, g.Approval)
			// Only when set, so a file without them hashes as before.
			if len(g.ActionClasses) > 0 {
				fmt.Fprintf(&b, " classes=%s", strings.Join(g.ActionClasses, ","))
			}
			if g.Shadow {
				b.WriteString(" shadow")
			}
			b.WriteByte('\n')
		}
		for _, k := range a.Keys {
			fmt.Fprintf(&b, "  key %s\n", keyAttrs(keyRow(a, k)))
		}
	}
	return b.String()
}

func keyRow(a Agent, k signing.KeySpec) KeyRow {
	row := KeyRow{KeyID: k.ID, AgentID: a.ID, Team: a.Team, Alg: k.Alg, PublicKey: k.PublicKey}
	switch {
	case k.SecretFile != "":
		row.SecretSource = "file:" + k.SecretFile
	case k.SecretEnv != "":
		row.SecretSource = "env:" + k.SecretEnv
	}
	if !k.NotBefore.IsZero() {
		t := k.NotBefore.UTC().Truncate(time.Millisecond)
		row.NotBefore = &t
	}
	if !k.NotAfter.IsZero() {
		t := k.NotAfter.UTC().Truncate(time.Millisecond)
		row.NotAfter = &t
	}
	return row
}

func keyAttrs(k KeyRow) string {
	f := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.UTC().Format(time.RFC3339Nano)
	}
	return strings.Join([]string{k.KeyID, k.AgentID, k.Team, k.Alg, k.PublicKey, k.SecretSource, f(k.NotBefore), f(k.NotAfter)}, "|")
}

func insertKeys(ctx context.Context, conn driver.Conn, db string, rows []KeyRow, v uint32) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+`.registry_keys (key_id, agent_id, team, alg, public_key, secret_source,
		not_before, not_after, valid_from, valid_to, opened_version, closed_version)`)
	if err != nil {
		return fmt.Errorf("registry: insert keys: %w", err)
	}
	for _, r := range rows {
		if err := b.Append(r.KeyID, r.AgentID, r.Team, r.Alg, r.PublicKey, r.SecretSource, r.NotBefore, r.NotAfter,
			r.ValidFrom, r.ValidTo, uint32(r.Version), closedVersion(r.ValidTo, v)); err != nil {
			return fmt.Errorf("registry: insert keys: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("registry: insert keys: %w", err)
	}
	return nil
}

func openKeys(ctx context.Context, conn driver.Conn, db string) (map[string]KeyRow, error) {
	rows, err := KeysAt(ctx, conn, db, OpenEnd.Add(-time.Millisecond))
	if err != nil {
		return nil, err
	}
	out := map[string]KeyRow{}
	for _, r := range rows {
		out[r.KeyID] = r
	}
	return out, nil
}

// KeysAt returns the signing keys registered at instant t, by agent and key
// id.
func KeysAt(ctx context.Context, conn driver.Conn, db string, t time.Time) ([]KeyRow, error) {
	rows, err := conn.Query(ctx, `SELECT key_id, agent_id, team, alg, public_key, secret_source, not_before, not_after,
			valid_from, valid_to, opened_version
		FROM `+db+`.registry_keys FINAL WHERE valid_from <= ? AND valid_to > ? ORDER BY agent_id, key_id`, ms(t), ms(t))
	if err != nil {
		return nil, fmt.Errorf("registry: read keys: %w", err)
	}
	defer rows.Close()
	var out []KeyRow
	for rows.Next() {
		var r KeyRow
		var v uint32
		if err := rows.Scan(&r.KeyID, &r.AgentID, &r.Team, &r.Alg, &r.PublicKey, &r.SecretSource, &r.NotBefore, &r.NotAfter,
			&r.ValidFrom, &r.ValidTo, &v); err != nil {
			return nil, fmt.Errorf("registry: read keys: %w", err)
		}
		for _, t := range []*time.Time{r.NotBefore, r.NotAfter} {
			if t != nil {
				*t = t.UTC()
			}
		}
		r.Version = int(v)
		out = append(out, r)
	}
	return out, rows.Err()
}

func teamValidTo(rows []TeamRow) []time.Time {
	out := make([]time.Time, len(rows))
	for i, r := range rows {
		out[i] = r.ValidTo
	}
	return out
}

func agentValidTo(rows []AgentRow) []time.Time {
	out := make([]time.Time, len(rows))
	for i, r := range rows {
		out[i] = r.ValidTo
	}
	return out
}

func grantValidTo(rows []GrantRow) []time.Time {
	out := make([]time.Time, len(rows))
	for i, r := range rows {
		out[i] = r.ValidTo
	}
	return out
}

func closedVersion(to time.Time, v uint32) uint32 {
	if to.Before(OpenEnd) {
		return v
	}
	return 0
}

func insertTeams(ctx context.Context, conn driver.Conn, db string, rows []TeamRow, v uint32) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".registry_teams (team, timezone, schedule, recipients, valid_from, valid_to, opened_version, closed_version)")
	if err != nil {
		return fmt.Errorf("registry: insert teams: %w", err)
	}
	for _, r := range rows {
		if err := b.Append(r.Name, r.TimeZone, r.Schedule, nonNil(r.Recipients), r.ValidFrom, r.ValidTo, uint32(r.Version), closedVersion(r.ValidTo, v)); err != nil {
			return fmt.Errorf("registry: insert teams: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("registry: insert teams: %w", err)
	}
	return nil
}

func insertAgents(ctx context.Context, conn driver.Conn, db string, rows []AgentRow, v uint32) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".registry_agents (agent_id, team, owner, description, valid_from, valid_to, opened_version, closed_version)")
	if err != nil {
		return fmt.Errorf("registry: insert agents: %w", err)
	}
	for _, r := range rows {
		if err := b.Append(r.ID, r.Team, r.Owner, r.Description, r.ValidFrom, r.ValidTo, uint32(r.Version), closedVersion(r.ValidTo, v)); err != nil {
			return fmt.Errorf("registry: insert agents: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("registry: insert agents: %w", err)
	}
	return nil
}

func insertGrants(ctx context.Context, conn driver.Conn, db string, rows []GrantRow, v uint32) error {
	if len(rows) == 0 {
		return nil
	}
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+`.registry_grants (grant_key, agent_id, team, tool, action, resource,
		resource_like, tier, rate_per_hour, rate_per_day, approval_required, approver_roles, valid_from, valid_to, opened_version, closed_version)`)
	if err != nil {
		return fmt.Errorf("registry: insert grants: %w", err)
	}
	for _, r := range rows {
		if err := b.Append(r.Key, r.AgentID, r.Team, r.Tool, r.Action, r.Resource, ResourceLike(r.Resource), uint8(r.Tier),
			uint32(r.PerHour), uint32(r.PerDay), r.ApprovalRequired, nonNil(r.ApproverRoles), r.ValidFrom, r.ValidTo, uint32(r.Version), closedVersion(r.ValidTo, v)); err != nil {
			return fmt.Errorf("registry: insert grants: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("registry: insert grants: %w", err)
	}
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func openTeams(ctx context.Context, conn driver.Conn, db string) (map[string]TeamRow, error) {
	rows, err := TeamsAt(ctx, conn, db, OpenEnd.Add(-time.Millisecond))
	if err != nil {
		return nil, err
	}
	out := map[string]TeamRow{}
	for _, r := range rows {
		out[r.Name] = r
	}
	return out, nil
}

func openAgents(ctx context.Context, conn driver.Conn, db string) (map[string]AgentRow, error) {
	rows, err := AgentsAt(ctx, conn, db, "", OpenEnd.Add(-time.Millisecond))
	if err != nil {
		return nil, err
	}
	out := map[string]AgentRow{}
	for _, r := range rows {
		out[r.ID] = r
	}
	return out, nil
}

func openGrants(ctx context.Context, conn driver.Conn, db string) (map[string]GrantRow, error) {
	rows, err := Grants(ctx, conn, db, "", OpenEnd.Add(-time.Millisecond), OpenEnd)
	if err != nil {
		return nil, err
	}
	out := map[string]GrantRow{}
	for _, r := range rows {
		out[r.Key] = r
	}
	return out, nil
}

// TeamsAt returns the teams registered at instant t, by name.
func TeamsAt(ctx context.Context, conn driver.Conn, db string, t time.Time) ([]TeamRow, error) {
	rows, err := conn.Query(ctx, `SELECT team, timezone, schedule, recipients, valid_from, valid_to, opened_version
		FROM `+db+`.registry_teams FINAL WHERE valid_from <= ? AND valid_to > ? ORDER BY team`, ms(t), ms(t))
	if err != nil {
		return nil, fmt.Errorf("registry: read teams: %w", err)
	}
	defer rows.Close()
	var out []TeamRow
	for rows.Next() {
		var r TeamRow
		var v uint32
		if err := rows.Scan(&r.Name, &r.TimeZone, &r.Schedule, &r.Recipients, &r.ValidFrom, &r.ValidTo, &v); err != nil {
			return nil, fmt.Errorf("registry: read teams: %w", err)
		}
		r.Version = int(v)
		out = append(out, r)
	}
	return out, rows.Err()
}

// AgentsAt returns the agents registered at instant t (of one team, or all
// when team is ""), by id.
func AgentsAt(ctx context.Context, conn driver.Conn, db, team string, t time.Time) ([]AgentRow, error) {
	rows, err := conn.Query(ctx, `SELECT agent_id, team, owner, description, valid_from, valid_to, opened_version
		FROM `+db+`.registry_agents FINAL WHERE valid_from <= ? AND valid_to > ? AND (? = '' OR team = ?) ORDER BY agent_id`,
		ms(t), ms(t), team, team)
	if err != nil {
		return nil, fmt.Errorf("registry: read agents: %w", err)
	}
	defer rows.Close()
	var out []AgentRow
	for rows.Next() {
		var r AgentRow
		var v uint32
		if err := rows.Scan(&r.ID, &r.Team, &r.Owner, &r.Description, &r.ValidFrom, &r.ValidTo, &v); err != nil {
			return nil, fmt.Errorf("registry: read agents: %w", err)
		}
		r.Version = int(v)
		out = append(out, r)
	}
	return out, rows.Err()
}

// Grants returns every grant row in force at some instant of [from, to) (of
// one team's agents, or all when team is ""), ordered by agent, tool, action,
// resource and validity. A grant revoked and granted again appears twice.
func Grants(ctx context.Context, conn driver.Conn, db, team string, from, to time.Time) ([]GrantRow, error) {
	rows, err := conn.Query(ctx, `SELECT grant_key, agent_id, team, tool, action, resource, tier, rate_per_hour, rate_per_day,
			approval_required, approver_roles, valid_from, valid_to, opened_version
		FROM `+db+`.registry_grants FINAL WHERE valid_from < ? AND valid_to > ? AND (? = '' OR team = ?)
		ORDER BY agent_id, tool, action, resource, valid_from`, ms(to), ms(from), team, team)
	if err != nil {
		return nil, fmt.Errorf("registry: read grants: %w", err)
	}
	defer rows.Close()
	var out []GrantRow
	for rows.Next() {
		var r GrantRow
		var tier uint8
		var perHour, perDay, v uint32
		if err := rows.Scan(&r.Key, &r.AgentID, &r.Team, &r.Tool, &r.Action, &r.Resource, &tier, &perHour, &perDay,
			&r.ApprovalRequired, &r.ApproverRoles, &r.ValidFrom, &r.ValidTo, &v); err != nil {
			return nil, fmt.Errorf("registry: read grants: %w", err)
		}
		r.Tier, r.PerHour, r.PerDay, r.Version = int(tier), int(perHour), int(perDay), int(v)
		out = append(out, r)
	}
	return out, rows.Err()
}

// ms renders t for comparison with DateTime64(3) columns: clickhouse-go
// binds a time.Time with second precision, which would misplace rows
// applied within the same second.
func ms(t time.Time) string {
	return t.UTC().Format("2006-01-02 15:04:05.000")
}

// ApplyFile loads, validates and applies the registry file at path (the
// demo calls it with deployments/registry.yaml).
func ApplyFile(ctx context.Context, conn driver.Conn, db, path string, opts ApplyOptions) (Summary, error) {
	r, err := Load(path)
	if err != nil {
		return Summary{}, err
	}
	if opts.Source == "" {
		opts.Source = path
	}
	return Apply(ctx, conn, db, r, opts)
}
