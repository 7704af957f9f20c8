package consumers

import "testing"

func TestPriorSQL(t *testing.T) {
	first := map[int32]int64{10: 7, 2: 0, 3: 41}
	for _, tc := range []struct {
		name, got, want string
	}{
		{"prior", PriorSQL(first), "((kafka_partition = 2 AND kafka_offset < 0) OR (kafka_partition = 3 AND kafka_offset < 41) OR " +
			"(kafka_partition = 10 AND kafka_offset < 7) OR kafka_partition NOT IN (2,3,10))"},
		{"prior, no partitions", PriorSQL(nil), "1"},
		{"prior in", PriorInSQL(first, []int32{3, 10}), "((kafka_partition = 3 AND kafka_offset < 41) OR (kafka_partition = 10 AND kafka_offset < 7))"},
		{"redo", RedoSQL(first, []int32{3}), "((kafka_partition = 3 AND kafka_offset >= 41))"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got != tc.want {
				t.Errorf("got  %s\nwant %s", tc.got, tc.want)
			}
		})
	}
}

func TestEventRowColumns(t *testing.T) {
	var r EventRow
	for _, c := range RestoreColumns {
		if r.dest(c) == nil {
			t.Errorf("RestoreColumns names %s, which EventRow cannot scan", c)
		}
	}
	if r.dest("no_such_column") != nil {
		t.Error("dest of an unknown column is not nil")
	}
}
