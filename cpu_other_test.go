//go:build !unix

package failover_test

import "time"

// cpuTime is not measured here: the ratios use wall time × GOMAXPROCS.
func cpuTime() (time.Duration, bool) { return 0, false }
