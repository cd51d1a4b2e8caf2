package failover

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// MaxRetryHint caps every retry hint: a provider that asks for a longer wait
// still gets its member probed after an hour.
const MaxRetryHint = time.Hour

// RetryHint returns the wait that response headers ask for, relative to now,
// capped at [MaxRetryHint]; 0 if they ask for none. It reads, in order of
// precedence:
//   - retry-after-ms and x-ms-retry-after-ms (milliseconds);
//   - Retry-After (seconds or an HTTP date);
//   - reset headers: x-ratelimit-reset-requests and -tokens (OpenAI and Groq
//     durations such as "6m0s", "1s", "20ms"), anthropic-ratelimit-*-reset
//     (RFC 3339 timestamps), x-ratelimit-reset (seconds or a Unix timestamp).
//     When a matching *-remaining-* header is 0, the latest reset of the
//     exhausted dimensions is used, otherwise the earliest reset.
//
// Unparsable values are ignored.
func RetryHint(h http.Header, now time.Time) time.Duration {
	return capHint(headerHint(h, now))
}

// headerHint is RetryHint bounded by maxPeriodHint instead: a period
// quota's reset may be hours away.
func headerHint(h http.Header, now time.Time) time.Duration {
	for _, k := range [...]string{"Retry-After-Ms", "X-Ms-Retry-After-Ms"} {
		if f, err := strconv.ParseFloat(strings.TrimSpace(h.Get(k)), 64); err == nil && f > 0 {
			return scaled(f, time.Millisecond)
		}
	}
	if d := parseRetryAfter(h.Get("Retry-After"), now); d > 0 {
		return periodCap(d)
	}
	return periodCap(resetHint(h, now))
}

// RetryHintFromBody returns the retryDelay of a google.rpc.RetryInfo detail
// in a JSON error body (Gemini and other Google APIs, as an object or a
// one-element array), capped at [MaxRetryHint]; 0 if there is none.
func RetryHintFromBody(body []byte) time.Duration {
	return capHint(retryInfo(body))
}

// errorEnvelope is the part of a JSON error body that carries retry hints:
// Google's RetryInfo detail, a retry_after field (seconds), and
// OpenRouter's copy of the upstream's rate-limit headers in
// error.metadata.headers. Gemini's OpenAI-compatible endpoint sends a list
// of one.
type errorEnvelope struct {
	RetryAfter json.RawMessage `json:"retry_after"` // a number, or a string ("30", "30s")
	Error      struct {
		Details []struct {
			RetryDelay string `json:"retryDelay"`
		} `json:"details"`
		RetryAfter json.RawMessage `json:"retry_after"`
		Metadata   struct {
			Headers map[string]any `json:"headers"`
		} `json:"metadata"`
	} `json:"error"`
}

// parseEnvelope decodes what it can: a field of another type than the
// envelope's (a string "error", a "details" that is no list) is left out,
// and the hints beside it are kept.
func parseEnvelope(body []byte) (errorEnvelope, bool) {
	var e errorEnvelope
	if decodedPart(json.Unmarshal(body, &e)) {
		return e, true
	}
	var list []errorEnvelope
	if !decodedPart(json.Unmarshal(body, &list)) || len(list) == 0 {
		return errorEnvelope{}, false
	}
	return list[0], true
}

// decodedPart reports whether json.Unmarshal decoded the value, but
// perhaps for fields of another type, which it skips and reports (a value
// that is itself of another type, such as a list for an object, is not
// decoded).
func decodedPart(err error) bool {
	var te *json.UnmarshalTypeError
	return err == nil || (errors.As(err, &te) && te.Field != "")
}

// retryInfo is the first Google RetryInfo retryDelay in body, bounded by
// maxPeriodHint.
func retryInfo(body []byte) time.Duration {
	e, ok := parseEnvelope(body)
	if !ok {
		return 0
	}
	for _, d := range e.Error.Details {
		if d.RetryDelay == "" {
			continue
		}
		if dur, err := time.ParseDuration(d.RetryDelay); err == nil && dur > 0 {
			return periodCap(dur)
		}
	}
	return 0
}

// bodyHint is the retry hint of a JSON error body: RetryInfo, a
// retry_after number of seconds, or the reset in OpenRouter's
// error.metadata.headers.
func bodyHint(body []byte, now time.Time) time.Duration {
	if len(body) == 0 {
		return 0
	}
	if d := retryInfo(body); d > 0 {
		return d
	}
	e, ok := parseEnvelope(body)
	if !ok {
		return 0
	}
	for _, raw := range [...]json.RawMessage{e.Error.RetryAfter, e.RetryAfter} {
		if d := secondsOf(raw); d > 0 {
			return d
		}
	}
	if len(e.Error.Metadata.Headers) > 0 {
		h := http.Header{}
		for k, v := range e.Error.Metadata.Headers {
			h.Set(k, fmt.Sprint(v))
		}
		return headerHint(h, now)
	}
	return 0
}

// secondsOf reads a retry_after value: seconds as a JSON number or a
// string ("30"), or a duration string ("30s", "1m30s"); 0 for anything
// else.
func secondsOf(raw json.RawMessage) time.Duration {
	if len(raw) == 0 {
		return 0
	}
	var f float64
	if json.Unmarshal(raw, &f) == nil {
		return max(scaled(f, time.Second), 0)
	}
	var str string
	if json.Unmarshal(raw, &str) != nil {
		return 0
	}
	str = strings.TrimSpace(str)
	if f, err := strconv.ParseFloat(str, 64); err == nil {
		return max(scaled(f, time.Second), 0)
	}
	if d, err := time.ParseDuration(str); err == nil && d > 0 {
		return d
	}
	return 0
}

// hintOf finds the retry hint an error carries: a RetryAfter method, an
// http.Header (see [RetryHint]), a JSON body with a RetryInfo, or a phrase
// such as "Please try again in 6s" in the message.
func hintOf(err error, body []byte, now time.Time) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		if d := ra.RetryAfter(); d > 0 {
			return periodCap(d)
		}
	}
	var hc interface{ Header() http.Header }
	if errors.As(err, &hc) {
		if d := headerHint(hc.Header(), now); d > 0 {
			return d
		}
	}
	var httpErr *HTTPError
	if errors.As(err, &httpErr) {
		if d := headerHint(httpErr.Header, now); d > 0 {
			return d
		}
	}
	if d := bodyHint(body, now); d > 0 {
		return d
	}
	return hintFromText(head(err.Error()))
}

func parseRetryAfter(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		return scaled(f, time.Second)
	}
	if t, err := http.ParseTime(v); err == nil {
		return t.Sub(now)
	}
	return 0
}

// resetDims pairs reset headers with their remaining headers.
var resetDims = [...]struct{ reset, remaining string }{
	{"X-Ratelimit-Reset-Requests", "X-Ratelimit-Remaining-Requests"},
	{"X-Ratelimit-Reset-Tokens", "X-Ratelimit-Remaining-Tokens"},
	{"Anthropic-Ratelimit-Requests-Reset", "Anthropic-Ratelimit-Requests-Remaining"},
	{"Anthropic-Ratelimit-Tokens-Reset", "Anthropic-Ratelimit-Tokens-Remaining"},
	{"Anthropic-Ratelimit-Input-Tokens-Reset", "Anthropic-Ratelimit-Input-Tokens-Remaining"},
	{"Anthropic-Ratelimit-Output-Tokens-Reset", "Anthropic-Ratelimit-Output-Tokens-Remaining"},
	{"X-Ratelimit-Reset-Requests-Day", "X-Ratelimit-Remaining-Requests-Day"},   // Cerebras
	{"X-Ratelimit-Reset-Tokens-Minute", "X-Ratelimit-Remaining-Tokens-Minute"}, // Cerebras
	{"X-Ratelimit-Reset", "X-Ratelimit-Remaining"},
}

func resetHint(h http.Header, now time.Time) time.Duration {
	var earliest, exhausted time.Duration
	for _, dim := range resetDims {
		d := parseReset(h.Get(dim.reset), now)
		if d <= 0 {
			continue
		}
		if strings.TrimSpace(h.Get(dim.remaining)) == "0" {
			exhausted = max(exhausted, d)
		}
		if earliest == 0 || d < earliest {
			earliest = d
		}
	}
	if exhausted > 0 {
		return exhausted
	}
	return earliest
}

// parseReset reads a reset value: a Go-style duration ("6m0s", "20ms"),
// an RFC 3339 timestamp, plain seconds, or a Unix timestamp in seconds or
// milliseconds.
func parseReset(v string, now time.Time) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		switch {
		case f >= 1e11: // Unix milliseconds (after 1973)
			return time.UnixMilli(int64(f)).Sub(now)
		case f >= 1e8: // Unix seconds (after 1973); no wait is three years
			return time.Unix(int64(f), 0).Sub(now)
		}
		return scaled(f, time.Second)
	}
	if d, err := time.ParseDuration(v); err == nil {
		return d
	}
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t.Sub(now)
	}
	return 0
}

var textHint = regexp.MustCompile(`(?i)\b(?:retry|try again)(?: after| in)\s+((?:\d+(?:\.\d+)?(?:ms|h|m|s))+|\d+(?:\.\d+)?\s*(?:milliseconds?|seconds?|secs?|minutes?|mins?|hours?)\b)`)

// hintFromText reads phrases such as "Please try again in 6s", "Please retry
// in 43.5s" and "retry after 6 seconds".
func hintFromText(msg string) time.Duration {
	m := textHint.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	s := strings.ToLower(strings.ReplaceAll(m[1], " ", ""))
	if d, err := time.ParseDuration(s); err == nil {
		return periodCap(d)
	}
	i := strings.IndexFunc(s, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	f, err := strconv.ParseFloat(s[:i], 64)
	if err != nil {
		return 0
	}
	unit := time.Second
	switch s[i] {
	case 'm':
		unit = time.Minute
		if strings.HasPrefix(s[i:], "milli") {
			unit = time.Millisecond
		}
	case 'h':
		unit = time.Hour
	}
	return scaled(f, unit)
}

// scaled returns f units as a hint in [0, MaxRetryHint], without overflow.
func scaled(f float64, unit time.Duration) time.Duration {
	if !(f > 0) { // also NaN
		return 0
	}
	if f >= float64(maxPeriodHint)/float64(unit) {
		return maxPeriodHint
	}
	return time.Duration(f * float64(unit))
}

// capHint clamps a hint to [0, MaxRetryHint].
func capHint(d time.Duration) time.Duration {
	return min(max(d, 0), MaxRetryHint)
}

// periodCap bounds a hint by maxPeriodHint, the longest a period quota's
// reset may be away.
func periodCap(d time.Duration) time.Duration {
	return min(max(d, 0), maxPeriodHint)
}

// exhaustedFor returns how long a member should rest after a successful
// response whose rate-limit headers say its quota is spent: a request
// dimension with 0 remaining, or a token dimension with fewer remaining than
// next (the next call's estimate, at least 1). It is the latest matching
// reset, capped at MaxRetryHint; 0 when nothing is spent.
func exhaustedFor(h http.Header, next int, now time.Time) time.Duration {
	var d time.Duration
	for _, dim := range resetDims {
		left, err := strconv.Atoi(strings.TrimSpace(h.Get(dim.remaining)))
		if err != nil {
			continue
		}
		need := 1
		if strings.Contains(dim.remaining, "Tokens") {
			need = max(next, 1)
		}
		if left < need {
			d = max(d, parseReset(h.Get(dim.reset), now))
		}
	}
	return capHint(d)
}
