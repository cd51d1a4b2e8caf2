package failover

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// State is a member's place in rotation.
type State int

// The states. A member's cooldown ends with one probe: while it is in flight
// the member is Probing and other calls skip it.
const (
	Active      State = iota // serves calls
	CoolingDown              // skipped until Status.Until
	Probing                  // one call is testing it after a cooldown
	Disabled                 // skipped until Enable
)

var stateNames = [...]string{"active", "cooling_down", "probing", "disabled"}

// String returns "active", "cooling_down", "probing" or "disabled".
func (s State) String() string {
	if s >= 0 && int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("State(%d)", int(s))
}

// MarshalText encodes the state as its String.
func (s State) MarshalText() ([]byte, error) {
	if s < 0 || int(s) >= len(stateNames) {
		return nil, fmt.Errorf("failover: invalid State %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a state written by MarshalText.
func (s *State) UnmarshalText(b []byte) error {
	for i, n := range stateNames {
		if n == string(b) {
			*s = State(i)
			return nil
		}
	}
	return fmt.Errorf("failover: unknown State %q", b)
}

// Status is a snapshot of one member. It holds nothing secret: LastError is
// redacted. RequestsToday and TokensToday count this pool's calls: with a
// [Store] the day's budget is shared by every pool, and each counts its
// own.
type Status struct {
	Name                string    `json:"name"`
	Model               string    `json:"model,omitempty"`
	Provider            string    `json:"provider,omitempty"` // Member.Provider
	Priority            int       `json:"priority"`
	State               State     `json:"state"`
	Reason              Reason    `json:"reason,omitempty"` // why it last left rotation
	Until               time.Time `json:"until,omitzero"`   // end of the cooldown
	ConsecutiveFailures int       `json:"consecutive_failures"`
	InFlight            int       `json:"in_flight"`
	Requests            uint64    `json:"requests"`
	Failures            uint64    `json:"failures"`
	Hedged              uint64    `json:"hedged"`  // hedged attempts started on it (WithHedge)
	Limited             uint64    `json:"limited"` // calls that skipped it for its Limits
	// Skipped counts the calls that passed the member over because it was
	// cooling down, being probed by another call, or disabled (see Skips);
	// Limited counts those that passed it over for its Limits.
	Skipped Skips `json:"skipped"`
	// Lacks lists the models the member answered not_found for while it
	// passes the caller's model through: calls for them skip it (see
	// ForModel) until the permanent lane's base window ends.
	Lacks            []string  `json:"lacks,omitempty"`
	Limits           Limits    `json:"limits"`            // its configured limits
	RequestsToday    int       `json:"requests_today"`    // calls started in the day of Limits.RPD and TPD
	TokensToday      int       `json:"tokens_today"`      // their tokens
	DayEnds          time.Time `json:"day_ends,omitzero"` // when that day ends; zero without RPD and TPD
	Served           uint64    `json:"served"`            // calls it answered
	PromptTokens     uint64    `json:"prompt_tokens"`     // prompt tokens of its responses, as the provider reported them
	CompletionTokens uint64    `json:"completion_tokens"` // completion tokens of its responses, likewise
	LastError        string    `json:"last_error,omitempty"`
}

// Skips counts the calls that passed a member over, by why it could not
// serve them, once a call and member however often the call looks again
// (after a failure, a wait or a hedge's delay). A call that tries members
// in order (Priority, RoundRobin, a tier's order) counts each member it
// passes before the one it tries; Weighted and LeastInFlight count a
// member their draws land on. With a Store, a member another replica is
// probing counts as Cooling here.
type Skips struct {
	Cooling  uint64 `json:"cooling"`  // in its cooldown window
	Probing  uint64 `json:"probing"`  // its cooldown over, another call's probe in flight
	Disabled uint64 `json:"disabled"` // disabled by a permanent failure or Disable
	Model    uint64 `json:"model"`    // it lacks the call's model (ForModel; see Status.Lacks)
}

// Status returns a snapshot of every member, in the order given to New or
// Update. A member whose cooldown has ended is Active: the next call probes
// it.
func (p *Pool[C]) Status() []Status {
	if p == nil {
		return nil
	}
	c := p.cfg.Load()
	now := p.now()
	sec := c.sec.get()
	out := make([]Status, len(c.members))
	for i := range c.members {
		m := &c.members[i]
		st := m.st
		st.mu.Lock()
		s := Status{
			Name: m.Name, Model: m.Model, Provider: m.Provider, Priority: m.Priority,
			State:               State(st.phase.Load()),
			Reason:              st.reason,
			ConsecutiveFailures: st.failCount,
		}
		lastErr := st.lastErr
		if s.State == CoolingDown {
			s.Until = st.until
		}
		st.mu.Unlock()
		if lastErr != "" {
			s.LastError = sec.Text(lastErr, maxErrText)
		}
		if s.State == CoolingDown && !now.Before(s.Until) {
			s.State = Active
		}
		s.InFlight = int(st.calls.inFlight())
		s.Requests = st.calls.requests()
		s.Failures = st.failures.Load()
		s.Hedged = st.hedged.Load()
		s.Limited = st.skips[skipLimited].requests()
		s.Skipped = Skips{
			Cooling:  st.skips[skipCooling].requests(),
			Probing:  st.skips[skipProbing].requests(),
			Disabled: st.skips[skipDisabled].requests(),
			Model:    st.skips[skipModel].requests(),
		}
		s.Lacks = st.lacked(now)
		s.Served = st.use.served.requests()
		s.PromptTokens = st.use.prompt.Load()
		s.CompletionTokens = st.use.completion.Load()
		s.Limits = m.Limits
		s.RequestsToday, s.TokensToday, s.DayEnds = st.lim.Load().today(now)
		out[i] = s
	}
	return out
}

// StatusHandler serves p.Status() for an app's admin endpoint: as a page
// for people to a client that asks for text/html (a browser), as a JSON
// array to anything else. It holds nothing secret: names, models, states,
// counters and redacted errors. It answers GET and HEAD only.
func StatusHandler[C any](p *Pool[C]) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		now := statusNow(p)
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Add("Vary", "Accept")
		w.Header().Set(nowHeader, now.UTC().Format(time.RFC3339Nano))
		if wantsHTML(r.Header.Values("Accept")) {
			serveStatusPage(w, p.Status(), now)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(p.Status())
	})
}
