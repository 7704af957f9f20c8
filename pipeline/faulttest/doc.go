// Package faulttest holds agentrail's fault tests: the ingest process killed
// repeatedly, ClickHouse stopped and restarted, the broker restarted, group
// members added and removed, and poison records mixed in. Each ends with
// exact accounting: every produced event is in ClickHouse exactly once as an
// analyst sees it, or in the dead-letter topic with its reason.
//
// `make test` runs them shortened; `make faults` sets AGENTRAIL_FAULTS_FULL=1
// for the full sizes. Everything runs on 127.0.0.1 and is bounded in time.
//
// It deliberately has no code outside its tests.
package faulttest
