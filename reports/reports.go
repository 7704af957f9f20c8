// Package reports builds the weekly permission report of each team, mails
// it on a schedule, and runs the tier-based retention job.
//
// A report covers one ISO week in the team's time zone: actions by tier and
// action class; denials with their top reasons and policies; approvals and
// the median time to approve; permissions granted but unused over the last N
// days (propose to revoke), repeatedly denied (under-scoped, or probing) or
// used without a grant; the week's violations and alerts, each with the
// command that shows its trace; the autonomy figures; week-over-week change;
// a chart of daily actions and denials by tier; and the retention summary.
// Build computes it from ClickHouse (the events, summarised per trace
// without FINAL, since a duplicate row cannot change a per-trace summary;
// the registry's versioned grants; the violations and alerts tables where
// they exist); it renders as an HTML mail with the chart inline, JSON and
// CSV.
//
// Service (`agentrail report serve`) sends each team's report on the
// team's cron schedule in its time zone, over SMTP with STARTTLS and
// authentication, retrying with backoff, and runs retention on its own
// schedule. Every run and every delivery attempt is recorded (report_runs,
// report_deliveries). A week is sent at most once to a recipient: the
// deliveries table is read before sending; a send interrupted between the
// SMTP exchange and its record is marked "unconfirmed" and not repeated
// (docs/REPORTS.md). A week sent before it ended is a partial report, says
// what it covers, and is recorded as partial: it never stands in for the
// final report, which is still sent once the week is over.
//
// Metrics:
//
//	agentrail_reports_runs_total{trigger="schedule|catch_up|manual",status="ok|failed|skipped"}
//	agentrail_reports_deliveries_total{status="sent|failed|skipped|unconfirmed"}
//	agentrail_reports_build_seconds (histogram)
//	agentrail_reports_last_sent_timestamp_seconds
//	agentrail_retention_* (see reports/retention)
//
// It deliberately does not decide anything about agents: a report proposes
// (revoke this grant, look at these denials); people decide. It does not
// send anything but reports, and keeps no state outside ClickHouse.
package reports
