package failover

import (
	"runtime"
	"sync/atomic"
)

// calls counts a member's calls, so that starting or ending a call is a
// single atomic add: the calls in flight in the low 24 bits of a word, the
// calls ever started above them.
//
// The word is striped: a pool with more than one processor gives each
// member one word per shard, and a call counts on the shard of the
// processor it runs on (see here, in here.go; a call reads it once, see
// selection.shard), so that parallel healthy calls on one
// member write no cache line another core reads or writes at once. The
// words of a shard of 16 members sit together in one 128-byte row that only
// that shard writes (see arena). The shards are summed when read: the
// encoding is linear, so the sum of the words mod 2^64 is the word of the
// totals, whichever shard each start, end or take-back went to; a shard's
// own in-flight part may be "negative". A sum read while calls start and
// end elsewhere may be off by those calls, never more.
//
// The zero calls is one word of its own (as in tests); init stripes it.
type calls struct {
	one  atomic.Uint64 // the word, when c is nil
	c    *chunk        // the member's column of words, one per shard
	i    int           // the member's column in c
	mask uint32        // shards-1; 0 with one shard
}

const (
	inFlightBits = 24
	inFlightMask = 1<<inFlightBits - 1
	oneCall      = 1<<inFlightBits | 1 // one more started, one more in flight
)

// init stripes c over the shards of a, in a fresh column.
func (c *calls) init(a *arena) {
	c.c, c.i = a.column()
	c.mask = uint32(len(c.c.rows) - 1)
}

// word returns the word a call running now counts on.
func (c *calls) word() *atomic.Uint64 {
	if c.c == nil || c.mask == 0 {
		return c.on(0)
	}
	return c.on(here())
}

// on returns the word of shard s (any number: it is masked), for a caller
// that read here() once for several counters.
func (c *calls) on(s uint32) *atomic.Uint64 {
	if c.c == nil {
		return &c.one
	}
	return &c.c.rows[s&c.mask][c.i]
}

// exact returns the word of the exact path: startBelow counts every start
// on it, so that two of them race on one word.
func (c *calls) exact() *atomic.Uint64 {
	if c.c == nil {
		return &c.one
	}
	return &c.c.rows[0][c.i]
}

// start counts a call that starts.
func (c *calls) start() { c.word().Add(oneCall) }

// startOn is start on shard s (see on).
func (c *calls) startOn(s uint32) { c.on(s).Add(oneCall) }

// startBelow counts a call that starts if fewer than max are in flight.
// It is exact: every start that checks a maximum adds on the same word,
// with a compare-and-swap after summing the other shards, which only
// the ends of calls and outcomes reported from outside (enter) change
// meanwhile; a concurrent end makes it refuse rather than admit too many.
func (c *calls) startBelow(max int64) bool {
	w := c.exact()
	for {
		v := w.Load()
		if n, _ := decode(v + c.others()); n >= max {
			return false
		}
		if w.CompareAndSwap(v, v+oneCall) {
			return true
		}
	}
}

// others sums the words of every shard but the exact one.
func (c *calls) others() uint64 {
	var sum uint64
	if c.c != nil {
		for s := 1; s < len(c.c.rows); s++ {
			sum += c.c.rows[s][c.i].Load()
		}
	}
	return sum
}

// unstart takes back a start that did not go ahead.
func (c *calls) unstart() { c.word().Add(^uint64(oneCall - 1)) }

// end counts a call that ended.
func (c *calls) end() { c.word().Add(^uint64(0)) }

// endOn is end on shard s (see on).
func (c *calls) endOn(s uint32) { c.on(s).Add(^uint64(0)) }

// enter counts an outcome reported from outside a call, which end will
// count out, without counting a start.
func (c *calls) enter() { c.word().Add(1) }

// count counts one more (in the started part), for a plain striped
// counter such as the calls a member served.
func (c *calls) count() { c.word().Add(1 << inFlightBits) }

// countOn is count on shard s (see on).
func (c *calls) countOn(s uint32) { c.on(s).Add(1 << inFlightBits) }

// load returns the calls in flight and the calls ever started.
func (c *calls) load() (inFlight int64, requests uint64) {
	return decode(c.exact().Load() + c.others())
}

func (c *calls) inFlight() int64  { n, _ := c.load(); return n }
func (c *calls) requests() uint64 { _, r := c.load(); return r }

// decode splits a sum of words: the in-flight part is signed (a sum read
// while calls move between shards may count an end before its start), and
// what it borrowed from the started part is given back. A negative count
// in flight reads as 0.
func decode(v uint64) (inFlight int64, requests uint64) {
	n := int64(v<<(64-inFlightBits)) >> (64 - inFlightBits)
	return max(n, 0), (v - uint64(n)) >> inFlightBits
}

// chunkMembers is how many members share a chunk: a row of 16 words is 128
// bytes, two cache lines (the pair an adjacent-line prefetcher fetches).
const chunkMembers = 16

// row is one shard's words of the members of a chunk.
type row [chunkMembers]atomic.Uint64

// chunk holds the counter words of up to 16 members, one row per shard.
// Rows are 128 bytes and the slice of them is allocated as one object of
// a power-of-two size class, so each row starts on its own cache lines.
type chunk struct{ rows []row }

// arena hands out columns of chunks to a pool's members. It is used by
// New and Update only, under the pool's update lock. A column is never
// reused: a chunk lives as long as one of its members does.
type arena struct {
	shards int
	cur    *chunk
	used   int
}

// maxShards bounds the memory of the counters: 8 bytes a member a shard.
const maxShards = 64

// newArena returns an arena with one shard per processor, rounded up to a
// power of two.
func newArena() arena {
	s := 1
	for s < runtime.GOMAXPROCS(0) && s < maxShards {
		s *= 2
	}
	return arena{shards: s}
}

func (a *arena) column() (*chunk, int) {
	if a.cur == nil || a.used == chunkMembers {
		a.cur, a.used = &chunk{rows: make([]row, max(a.shards, 1))}, 0
	}
	a.used++
	return a.cur, a.used - 1
}
