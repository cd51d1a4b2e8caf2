//go:build gc && !purego

package failover

import _ "unsafe" // for go:linkname

// here returns the number of the processor (the runtime's P) the goroutine
// runs on, which picks a shard of a member's call counters. It may move to
// another processor at once: nothing but speed depends on the number, any
// shard counts right.
//
// runtime.procPin is what sync.Pool finds its per-processor slot with; the
// runtime keeps it for packages outside the standard library (go.dev/issue/67401).
// It costs about 2 ns, where a sync.Pool round trip (here_purego.go, with
// the purego build tag or another compiler) costs about 10 ns, twice per call.
func here() uint32 {
	n := procPin()
	procUnpin()
	return uint32(n)
}

//go:linkname procPin runtime.procPin
func procPin() int

//go:linkname procUnpin runtime.procUnpin
func procUnpin()
