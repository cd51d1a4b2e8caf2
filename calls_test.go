package failover

import (
	"sync"
	"testing"
)

func TestCallsPacking(t *testing.T) {
	var c calls
	c.start()
	c.start()
	if !c.startBelow(3) || c.startBelow(3) {
		t.Fatal("startBelow(3) admits the third call only")
	}
	c.unstart()
	c.end()
	c.enter()
	c.end()
	if c.inFlight() != 1 || c.requests() != 2 {
		t.Fatalf("in flight %d, requests %d; want 1, 2", c.inFlight(), c.requests())
	}
	for range 1 << 20 {
		c.start()
		c.end()
	}
	if c.inFlight() != 1 || c.requests() != 2+1<<20 {
		t.Fatalf("after a million calls: in flight %d, requests %d", c.inFlight(), c.requests())
	}
}

// A striped counter sums its shards, whichever shard each start and end
// went to, and startBelow stays exact with calls on every shard.
func TestCallsStriped(t *testing.T) {
	a := arena{shards: 4}
	var c calls
	c.init(&a)
	for s := range c.c.rows { // starts and ends on different shards
		c.c.rows[s][c.i].Add(oneCall)
		c.c.rows[(s+1)%4][c.i].Add(^uint64(0))
	}
	c.c.rows[3][c.i].Add(oneCall)
	c.c.rows[2][c.i].Add(oneCall)
	if n, r := c.load(); n != 2 || r != 6 {
		t.Fatalf("in flight %d, requests %d; want 2, 6", n, r)
	}
	if !c.startBelow(3) || c.startBelow(3) {
		t.Fatal("startBelow(3) admits the third call only")
	}
	c.c.rows[1][c.i].Add(^uint64(0)) // an end on another shard frees a slot
	if !c.startBelow(3) {
		t.Fatal("startBelow misses an end on another shard")
	}
	// A sum that sees an end before its start reads 0 in flight and keeps
	// the requests.
	if n, r := decode(5<<inFlightBits - 1); n != 0 || r != 5 {
		t.Fatalf("decode of a transient -1: in flight %d, requests %d", n, r)
	}
	// Columns of one arena share chunks of 16, each row its own.
	var d calls
	d.init(&a)
	if d.c != c.c || d.i != c.i+1 || len(c.c.rows) != 4 {
		t.Fatalf("columns: %p[%d], %p[%d]", c.c, c.i, d.c, d.i)
	}
}

// Parallel starts and ends on a striped counter lose nothing.
func TestCallsStripedParallel(t *testing.T) {
	a := newArena()
	var c calls
	c.init(&a)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 10000 {
				c.start()
				c.end()
				if c.startBelow(1 << 20) {
					c.unstart()
				}
			}
		})
	}
	wg.Wait()
	if n, r := c.load(); n != 0 || r != 80000 {
		t.Fatalf("in flight %d, requests %d; want 0, 80000", n, r)
	}
}
