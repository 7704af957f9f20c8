package retention

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// Hold scopes.
const (
	ScopeTrace = "trace"
	ScopeAgent = "agent"
	ScopeTeam  = "team"
)

// Hold is a legal hold: the events of one trace, agent or team are kept past
// their expiry until the hold is released.
type Hold struct {
	ID         string
	Scope      string // trace, agent or team
	Value      string // the trace id, agent id or team name
	Reason     string
	SetBy      string
	SetAt      time.Time
	ReleasedAt time.Time // zero while active
	ReleasedBy string
}

// Active reports whether the hold is in force at t.
func (h Hold) Active(t time.Time) bool {
	return !h.SetAt.After(t) && (h.ReleasedAt.IsZero() || h.ReleasedAt.After(t))
}

// Validate checks a hold before it is set.
func (h Hold) Validate() error {
	var errs []error
	switch h.Scope {
	case ScopeTrace, ScopeAgent, ScopeTeam:
	default:
		errs = append(errs, fmt.Errorf("scope: %q must be trace, agent or team", h.Scope))
	}
	if strings.TrimSpace(h.Value) == "" || len(h.Value) > 256 {
		errs = append(errs, errors.New("value: the trace id, agent id or team name is required (at most 256 bytes)"))
	}
	if strings.TrimSpace(h.Reason) == "" {
		errs = append(errs, errors.New("reason: is required (the matter or request the hold serves)"))
	}
	if strings.TrimSpace(h.SetBy) == "" {
		errs = append(errs, errors.New("set_by: is required (who set the hold)"))
	}
	return errors.Join(errs...)
}

// SetHold records a new hold, in force from now. An empty ID gets a random
// one. It returns the hold as stored.
func SetHold(ctx context.Context, conn driver.Conn, db string, h Hold, now time.Time) (Hold, error) {
	if err := h.Validate(); err != nil {
		return h, fmt.Errorf("retention: set hold: %w", err)
	}
	if h.ID == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		h.ID = "hold-" + hex.EncodeToString(b)
	}
	h.SetAt = now.UTC().Truncate(time.Millisecond)
	h.ReleasedAt, h.ReleasedBy = time.Time{}, ""
	if err := conn.Exec(ctx, `INSERT INTO `+db+`.legal_holds (hold_id, scope, value, reason, set_by, set_at, released_at, released_by, revision)
		VALUES (?, ?, ?, ?, ?, ?, NULL, '', 1)`, h.ID, h.Scope, h.Value, h.Reason, h.SetBy, h.SetAt); err != nil {
		return h, fmt.Errorf("retention: set hold: %w", err)
	}
	return h, nil
}

// ErrNoHold is returned when releasing a hold that does not exist or is
// already released.
var ErrNoHold = errors.New("retention: no active hold with that id")

// ReleaseHold ends a hold from now on; the record of it stays.
func ReleaseHold(ctx context.Context, conn driver.Conn, db, id, by string, now time.Time) error {
	if strings.TrimSpace(by) == "" {
		return errors.New("retention: release hold: released_by is required")
	}
	holds, err := Holds(ctx, conn, db)
	if err != nil {
		return err
	}
	for _, h := range holds {
		if h.ID != id || !h.ReleasedAt.IsZero() {
			continue
		}
		if err := conn.Exec(ctx, `INSERT INTO `+db+`.legal_holds (hold_id, scope, value, reason, set_by, set_at, released_at, released_by, revision)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, 2)`, h.ID, h.Scope, h.Value, h.Reason, h.SetBy, h.SetAt, now.UTC().Truncate(time.Millisecond), by); err != nil {
			return fmt.Errorf("retention: release hold %s: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNoHold, id)
}

// Holds returns every hold ever set, active and released, by set time.
func Holds(ctx context.Context, conn driver.Conn, db string) ([]Hold, error) {
	rows, err := conn.Query(ctx, `SELECT hold_id, scope, value, reason, set_by, set_at, released_at, released_by
		FROM `+db+`.legal_holds FINAL ORDER BY set_at, hold_id`)
	if err != nil {
		return nil, fmt.Errorf("retention: read holds: %w", err)
	}
	defer rows.Close()
	var out []Hold
	for rows.Next() {
		var h Hold
		var rel *time.Time
		if err := rows.Scan(&h.ID, &h.Scope, &h.Value, &h.Reason, &h.SetBy, &h.SetAt, &rel, &h.ReleasedBy); err != nil {
			return nil, fmt.Errorf("retention: read holds: %w", err)
		}
		if rel != nil {
			h.ReleasedAt = *rel
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// ActiveHolds returns the holds in force at t.
func ActiveHolds(ctx context.Context, conn driver.Conn, db string, t time.Time) ([]Hold, error) {
	all, err := Holds(ctx, conn, db)
	if err != nil {
		return nil, err
	}
	var out []Hold
	for _, h := range all {
		if h.Active(t) {
			out = append(out, h)
		}
	}
	return out, nil
}

// heldSet is the active holds by scope, as SQL array parameters.
type heldSet struct {
	traces, agents, teams []string
	holds                 []Hold
}

func newHeldSet(holds []Hold) heldSet {
	s := heldSet{traces: []string{}, agents: []string{}, teams: []string{}, holds: holds}
	for _, h := range holds {
		switch h.Scope {
		case ScopeTrace:
			s.traces = append(s.traces, h.Value)
		case ScopeAgent:
			s.agents = append(s.agents, h.Value)
		case ScopeTeam:
			s.teams = append(s.teams, h.Value)
		}
	}
	return s
}

// expr is the SQL condition "this event is held", with its three array
// arguments.
func (s heldSet) expr() (string, []any) {
	return "(has(?, trace_id) OR has(?, agent_id) OR has(?, toString(team)))", []any{s.traces, s.agents, s.teams}
}

// ids returns the holds matching any of the given held values.
func (s heldSet) ids(traces, agents, teams []string) []string {
	in := func(xs []string, v string) bool {
		for _, x := range xs {
			if x == v {
				return true
			}
		}
		return false
	}
	var out []string
	for _, h := range s.holds {
		switch {
		case h.Scope == ScopeTrace && in(traces, h.Value),
			h.Scope == ScopeAgent && in(agents, h.Value),
			h.Scope == ScopeTeam && in(teams, h.Value):
			out = append(out, h.ID)
		}
	}
	return out
}
