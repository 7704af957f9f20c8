package main

import (
	"time"

	"github.com/agentrail/agentrail/ledger"
	"github.com/agentrail/agentrail/reports"
	"github.com/agentrail/agentrail/reports/registry"
	"github.com/agentrail/agentrail/reports/retention"
)

// The --json shapes of the commands whose results are types of other
// packages: snake_case keys that stay as they are when those types change.

type registryApplyJSON struct {
	Version     int       `json:"version"`
	EffectiveAt time.Time `json:"effective_at"`
	Teams       int       `json:"teams"`
	Agents      int       `json:"agents"`
	Grants      int       `json:"grants"`
	Keys        int       `json:"keys"`
	Opened      int       `json:"rows_opened"`
	Closed      int       `json:"rows_closed"`
	Added       []string  `json:"added"`
	Changed     []string  `json:"changed"`
	Revoked     []string  `json:"revoked"`
}

func toRegistryApplyJSON(s registry.Summary) registryApplyJSON {
	return registryApplyJSON{s.Version, s.EffectiveAt, s.Teams, s.Agents, s.Grants, s.Keys, s.Opened, s.Closed,
		nonNil(s.Added), nonNil(s.Change), nonNil(s.Revoked)}
}

type deliveryJSON struct {
	RunID       string     `json:"run_id"`
	Team        string     `json:"team"`
	Week        string     `json:"week"`
	Partial     bool       `json:"partial"`
	CoversUntil *time.Time `json:"covers_until,omitempty"`
	MessageID   string     `json:"message_id"`
	Sent        []string   `json:"sent"`
	Already     []string   `json:"already"`
	Unconfirmed []string   `json:"unconfirmed"`
	Attempts    int        `json:"attempts"`
	Error       string     `json:"error,omitempty"`
}

func toDeliveryJSON(d reports.Delivery, err error) deliveryJSON {
	j := deliveryJSON{RunID: d.RunID, Team: d.Team, Week: d.Week, Partial: d.Partial, MessageID: d.MessageID,
		Sent: nonNil(d.Sent), Already: nonNil(d.Already), Unconfirmed: nonNil(d.Unconfirmed), Attempts: d.Attempts}
	if d.Partial {
		j.CoversUntil = &d.CoversUntil
	}
	if err != nil {
		j.Error = err.Error()
	}
	return j
}

type holdJSON struct {
	ID         string     `json:"hold_id"`
	Scope      string     `json:"scope"`
	Value      string     `json:"value"`
	Reason     string     `json:"reason"`
	SetBy      string     `json:"set_by"`
	SetAt      time.Time  `json:"set_at"`
	Active     bool       `json:"active"`
	ReleasedAt *time.Time `json:"released_at,omitempty"`
	ReleasedBy string     `json:"released_by,omitempty"`
}

func toHoldJSON(h retention.Hold) holdJSON {
	j := holdJSON{ID: h.ID, Scope: h.Scope, Value: h.Value, Reason: h.Reason, SetBy: h.SetBy, SetAt: h.SetAt,
		Active: h.ReleasedAt.IsZero(), ReleasedBy: h.ReleasedBy}
	if !h.ReleasedAt.IsZero() {
		j.ReleasedAt = &h.ReleasedAt
	}
	return j
}

type retentionActionJSON struct {
	Tier        int               `json:"tier"`
	PartitionID string            `json:"partition_id"`
	From        time.Time         `json:"from"`
	To          time.Time         `json:"to"`
	Action      string            `json:"action"`
	Events      uint64            `json:"events"`
	Deleted     uint64            `json:"deleted"`
	Stripped    uint64            `json:"fields_cleared"`
	Held        uint64            `json:"kept_by_holds"`
	DeletedBy   map[string]uint64 `json:"deleted_by_team"`
	Holds       []string          `json:"holds"`
}

type retentionRunJSON struct {
	RunID       string                `json:"run_id"`
	Started     time.Time             `json:"started"`
	Finished    time.Time             `json:"finished"`
	DryRun      bool                  `json:"dry_run"`
	Policy      string                `json:"policy"`
	ActiveHolds int                   `json:"active_holds"`
	Deleted     uint64                `json:"deleted"`
	Stripped    uint64                `json:"fields_cleared"`
	Held        uint64                `json:"kept_by_holds"`
	Actions     []retentionActionJSON `json:"actions"`
	Error       string                `json:"error,omitempty"`
}

func toRetentionRunJSON(r retention.Run, err error) retentionRunJSON {
	j := retentionRunJSON{RunID: r.ID, Started: r.Started, Finished: r.Finished, DryRun: r.DryRun, Policy: r.Policy,
		ActiveHolds: r.HoldCount, Deleted: r.Deleted, Stripped: r.Stripped, Held: r.Held, Actions: []retentionActionJSON{}}
	for _, a := range r.Actions {
		by := a.ByTeam
		if by == nil {
			by = map[string]uint64{}
		}
		j.Actions = append(j.Actions, retentionActionJSON{a.Tier, a.PartitionID, a.RangeStart, a.RangeEnd, a.Kind,
			a.Rows, a.Deleted, a.Stripped, a.Held, by, nonNil(a.Holds)})
	}
	if err != nil {
		j.Error = err.Error()
	}
	return j
}

type sealJSON struct {
	Entries int    `json:"entries"`
	Ranges  int    `json:"ranges"`
	Rows    uint64 `json:"rows"`
	Skipped string `json:"skipped,omitempty"`
	Head    uint64 `json:"chain_head"`
	KeyID   string `json:"key_id"`
}

func toSealJSON(r ledger.SealResult, head uint64, key string) sealJSON {
	return sealJSON{r.Entries, r.Ranges, r.Rows, r.Skipped, head, key}
}

// nonNil makes an absent list print as [] rather than null.
func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
