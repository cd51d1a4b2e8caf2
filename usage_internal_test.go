package failover

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// usageScan reads the same counts whatever the reads' sizes, only from a
// "usage" object's own top level, never from strings.
func TestUsageScanSplits(t *testing.T) {
	doc := `{"content":"x \"usage\":{\"prompt_tokens\":9}","usage" : {"prompt_tokens_details":{"cached_tokens":3},"prompt_tokens": 120,"completion_tokens":45},"tail":[1,{"a":"}"}]}`
	for size := 1; size <= len(doc); size++ {
		var s usageScan
		for i := 0; i < len(doc); i += size {
			s.feed([]byte(doc[i:min(i+size, len(doc))]))
		}
		p, c, ok := s.counts()
		assert.True(t, ok)
		assert.Equal(t, [2]int{120, 45}, [2]int{p, c}, "reads of %d bytes", size)
		assert.True(t, s.docEnded)
	}
	_, _, ok := scanUsage([]byte(`{"usage":null,"type":"response.created"}`))
	assert.False(t, ok)
}
