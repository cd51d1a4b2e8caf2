package failover

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ErrLacksModel is the Err of an Attempt skipped because the member
// answered not_found for the call's model (see [ForModel]).
var ErrLacksModel = errors.New("failover: the member lacks the call's model")

// maxLacks bounds the models a member remembers it lacks: past it, the
// one that ends first is forgotten.
const maxLacks = 8

// lack is a model a member answered not_found for, and until when calls
// for it skip the member.
type lack struct {
	model string
	until time.Time
}

// lacks reports whether the member lacks model at now. A member that
// never lacked one answers with one atomic load.
func (s *memberState) lacks(model string, now time.Time) bool {
	l := s.lacking.Load()
	if l == nil || model == "" {
		return false
	}
	for _, x := range *l {
		if x.model == model && now.Before(x.until) {
			return true
		}
	}
	return false
}

// lacked returns the models the member lacks at now, for Status.
func (s *memberState) lacked(now time.Time) []string {
	l := s.lacking.Load()
	if l == nil {
		return nil
	}
	var out []string
	for _, x := range *l {
		if now.Before(x.until) {
			out = append(out, x.model)
		}
	}
	return out
}

// lackModel records that the member lacks model until until, after an
// attempt holding g failed with errText: the failure counts, its text is
// the last error, and the member's window and backoff are left as they
// are. A probe that ended so gives its slot back. It takes mu.
func (s *memberState) lackModel(g grant, model string, until time.Time, errText string, now time.Time) change {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failures.Add(1)
	s.lastErr = errText
	s.dirty.Store(true)
	var next []lack
	if l := s.lacking.Load(); l != nil {
		for _, x := range *l {
			if x.model != model && now.Before(x.until) {
				next = append(next, x)
			}
		}
	}
	if until.After(now) {
		next = append(next, lack{model: model, until: until})
	}
	if len(next) > maxLacks {
		slices.SortFunc(next, func(a, b lack) int { return b.until.Compare(a.until) })
		next = next[:maxLacks]
	}
	if len(next) == 0 {
		s.lacking.Store(nil) // nothing lacked: the selection's check stays one load
	} else {
		s.lacking.Store(&next)
	}
	if g.probe && g.epoch == s.epoch.Load() && s.phase.Load() == phaseProbing {
		s.phase.Store(phaseCooling) // the probe says nothing of the member: give its slot back
		return change{wake: true}
	}
	return change{}
}

// lacked settles an attempt on st that failed with not_found for what
// the caller asked of a member that passes the caller's model through:
// for the model itself (record), the member is skipped for that model
// only, for the permanent lane's base window; for a feature of the
// request (tools, streaming) the call fails over and nothing is kept.
// Either way the member stays in rotation for every other call.
func (p *Pool[C]) lacked(ctx context.Context, st *memberState, g grant, err error, model string, record bool, now time.Time, n int) {
	st.calls.end()
	until := now
	if record {
		until = now.Add(p.set.cooldowns.Permanent.Base)
	}
	ch := st.lackModel(g, model, until, keptText(err), now)
	p.freed(st)
	p.record(st, ch)
	p.emit(ctx, Event{Kind: EventAttemptFailed, Member: st.name, Reason: ReasonNotFound, Err: p.redacted(err), Attempt: n})
}

// stillThrough reports whether the member called name passes the caller's
// model through in the pool's current members: an Update that gave it a
// Model while an attempt was in flight makes that attempt's lack moot.
func (p *Pool[C]) stillThrough(name string) bool {
	c := p.cfg.Load()
	i, ok := c.byName[name]
	return ok && c.members[i].Model == ""
}

// through reports whether a member of the pool passes the caller's model
// through, so that the call's model matters (see ForModel).
func (p *Pool[C]) through() bool { return p != nil && p.cfg.Load().through }

// What a not_found of a pass-through member is about.
const (
	missingNothing = iota // nothing says: a wrong base URL, an endpoint it lacks
	missingModel          // the model: model_not_found and its wordings
	missingFeature        // a feature of this request the model lacks here: tools, streaming
)

// Source: the not_found codes and text rules (codes.go, textrules.go) that
// name the model, and those that name one feature of the request.
var (
	modelGone      = regexp.MustCompile(`(?i)model_not_found|model not found|model .{0,80}does not exist|model (?:does )?not exists?|no such model|unknown model|invalid model|not a valid model|decommissioned|model_is_deactivated|model_not_available|deploymentnotfound|no endpoints found|not allowed to use publisher model|unable to access (?:non-serverless )?model|models/\S+ is not found|model .{0,80}not found|^model: \S|not_found_error.{0,40}model:|not a chat model`)
	featureRefused = regexp.MustCompile(`(?i)no endpoints found (?:that|matching)|does not support|not supported (?:with|by|on|for) this|must be verified to|tool choice requires|throughput isn.t supported|operationnotsupported`)
)

// missing tells what a not_found failure is about, from its codes and
// text.
func missing(err error) int {
	f, _ := structured(err)
	text := strings.Join([]string{f.codes, f.msg, err.Error()}, " ")
	switch {
	case featureRefused.MatchString(text):
		return missingFeature
	case modelGone.MatchString(text):
		return missingModel
	}
	return missingNothing
}
