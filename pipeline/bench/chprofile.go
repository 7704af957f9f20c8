package bench

import (
	"context"
	"fmt"
	"time"
)

// chProfile prints where ClickHouse spent its CPU during one throughput
// run on database db: per statement kind and tables (system.query_log)
// and per merge or new part by table (system.part_log), each in seconds
// and µs per event of the run. The server keeps those logs only with
// --ch-profile (chserver.Config.SystemLogs). The peer's Kafka-engine
// reads run in the server's background threads, not as statements, so
// for the peer only the part_log half says much.
func (e *env) chProfile(ctx context.Context, run, db string, since time.Time) {
	if err := e.conn.Exec(ctx, "SYSTEM FLUSH LOGS"); err != nil {
		fmt.Fprintf(e.cfg.Out, "%s: ClickHouse profile: %v\n", run, err)
		return
	}
	const cpu = `sum(ProfileEvents['UserTimeMicroseconds'] + ProfileEvents['SystemTimeMicroseconds'])`
	queries := []struct{ what, sql string }{
		{"statements", `SELECT lower(query_kind) || ' ' || arrayStringConcat(arraySort(arrayMap(t -> replaceOne(t, ?, ''), tables)), '+'),
			count(), ` + cpu + `, sum(written_rows)
			FROM system.query_log WHERE type = 'QueryFinish' AND event_time >= ? AND has(databases, ?)
			GROUP BY 1 HAVING ` + cpu + ` > 10000 ORDER BY 3 DESC LIMIT 12`},
		{"parts", `SELECT multiIf(event_type = 'MergeParts', 'merge ', event_type = 'NewPart', 'new part ', lower(toString(event_type)) || ' ') || table,
			count(), ` + cpu + `, sum(rows)
			FROM system.part_log WHERE event_time >= ? AND database = ? AND event_type IN ('MergeParts', 'NewPart', 'MutatePart')
			GROUP BY 1 HAVING ` + cpu + ` > 10000 ORDER BY 3 DESC LIMIT 12`},
	}
	fmt.Fprintf(e.cfg.Out, "%s: ClickHouse CPU by statement and by part operation (query_log, part_log):\n", run)
	for _, q := range queries {
		args := []any{since.Add(-time.Second), db}
		if q.what == "statements" {
			args = append([]any{db + "."}, args...)
		}
		rows, err := e.conn.Query(ctx, q.sql, args...)
		if err != nil {
			fmt.Fprintf(e.cfg.Out, "  %s: %v\n", q.what, err)
			continue
		}
		for rows.Next() {
			var (
				what    string
				n, rs   uint64
				cpuUsec uint64
			)
			if err := rows.Scan(&what, &n, &cpuUsec, &rs); err != nil {
				fmt.Fprintf(e.cfg.Out, "  %s: %v\n", q.what, err)
				break
			}
			fmt.Fprintf(e.cfg.Out, "  %-44s %5d× %7.2f s CPU %6.1f µs/event  %9d rows\n",
				what, n, float64(cpuUsec)/1e6, float64(cpuUsec)/float64(e.cfg.Events), rs)
		}
		rows.Close()
	}
}
