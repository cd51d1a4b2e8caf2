package failover

import "testing"

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
