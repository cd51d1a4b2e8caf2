package redact

import (
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
)

// MinSecret is the shortest credential redacted literally. Shorter values
// (a placeholder key such as "x" for a local server) would blank out
// ordinary words; the shape rules still apply to them.
const MinSecret = 8

// Secrets is an immutable set of literal credentials. The nil *Secrets
// holds none.
type Secrets struct {
	list []string // longest first, so that a secret inside another goes with it
	max  int      // length of the longest
	r    *strings.Replacer
}

// NewSecrets returns the set of the given values that are at least
// [MinSecret] long, with their URL-escaped forms (a key sent in a query
// string comes back escaped in a *url.Error).
func NewSecrets(values ...string) *Secrets {
	var list []string
	for _, v := range values {
		v = strings.TrimSpace(v)
		if len(v) < MinSecret {
			continue
		}
		list = append(list, v)
		if q := url.QueryEscape(v); q != v {
			list = append(list, q)
		}
		if p := url.PathEscape(v); p != v {
			list = append(list, p)
		}
	}
	if len(list) == 0 {
		return nil
	}
	slices.SortFunc(list, func(a, b string) int { return len(b) - len(a) })
	list = slices.Compact(list)
	pairs := make([]string, 0, 2*len(list))
	for _, s := range list {
		pairs = append(pairs, s, Mask)
	}
	return &Secrets{list: list, max: len(list[0]), r: strings.NewReplacer(pairs...)}
}

// Len returns the number of literal values in s.
func (s *Secrets) Len() int {
	if s == nil {
		return 0
	}
	return len(s.list)
}

// String returns text with every literal secret of s and every credential
// shape (see [String]) replaced by [Mask].
func (s *Secrets) String(text string) string {
	if s != nil {
		text = s.r.Replace(text)
	}
	return String(text)
}

// Text returns at most n bytes of text, redacted. It cuts before it
// redacts, so a huge error costs no more than a small one, and leaves a
// margin so that a secret cut in two by the first cut is still found.
func (s *Secrets) Text(text string, n int) string {
	margin := 256
	if s != nil {
		margin += s.max
	}
	if len(text) > n+margin {
		text = text[:n+margin]
	}
	return Truncate(s.String(text), n)
}

// Learned collects the credentials a client is seen to send, for a client
// whose configuration does not show them (go-openai keeps its key
// unexported). Its methods are safe for concurrent use; the zero value is
// ready.
type Learned struct {
	seen atomic.Pointer[[]string]
	gen  atomic.Uint64 // bumped on every change
}

// maxLearned bounds what one client can teach: a client that sends a new
// credential on every request (a short-lived token) keeps the latest few.
const maxLearned = 8

// Add records v if it is new.
func (l *Learned) Add(v string) {
	v = strings.TrimSpace(v)
	if len(v) < MinSecret {
		return
	}
	for {
		old := l.seen.Load()
		if old != nil && slices.Contains(*old, v) {
			return
		}
		var next []string
		if old != nil {
			next = append(next, (*old)[max(len(*old)-maxLearned+1, 0):]...)
		}
		next = append(next, v)
		if l.seen.CompareAndSwap(old, &next) {
			l.gen.Add(1)
			return
		}
	}
}

// Gen returns a number that changes whenever Values does.
func (l *Learned) Gen() uint64 { return l.gen.Load() }

// Values returns what was learned, oldest first.
func (l *Learned) Values() []string {
	if l == nil {
		return nil
	}
	if p := l.seen.Load(); p != nil {
		return *p
	}
	return nil
}
