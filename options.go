package failover

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"
)

// Strategy orders the members inside a priority tier.
type Strategy int

// The strategies. Tiers by Priority always come first; a strategy only
// orders members of equal priority.
const (
	// Ordered tries members in the order they were given.
	Ordered Strategy = iota
	// RoundRobin starts each call at the next member of the tier.
	RoundRobin
	// Weighted spreads calls at random in proportion to Member.Weight
	// (weights 3 and 1 give a 75 % of the calls, b 25 %), among the
	// members that can serve. A draw costs the same at any tier size; on a
	// virtual clock (WithClock) the draws are a fixed sequence.
	Weighted
	// LeastInFlight picks the member with the fewest calls in flight; ties
	// go to the earlier member. In a tier of more than 8 members it picks
	// the less busy of two ready members drawn at random (the "power of
	// two choices"), so that a call costs the same at any tier size: a
	// busy member is avoided, but the least busy one is not guaranteed.
	LeastInFlight
)

var strategyNames = [...]string{"ordered", "round_robin", "weighted", "least_in_flight"}

// String returns the strategy's name, such as "round_robin".
func (s Strategy) String() string {
	if s >= 0 && int(s) < len(strategyNames) {
		return strategyNames[s]
	}
	return "Strategy(" + strconv.Itoa(int(s)) + ")"
}

// Option configures a [Pool]. Options are checked by [New]: an invalid value
// is an error that names the option, never a panic.
type Option func(*settings)

// settings is what the options set; New validates it as a whole.
type settings struct {
	strategy        Strategy
	cooldowns       Cooldowns
	classifier      Classifier
	observer        func(Event)
	hooks           Hooks
	logger          *slog.Logger
	maxAttempts     int
	attemptTimeout  time.Duration
	waitForRecovery time.Duration
	stickiness      time.Duration
	budget          *budgetSpec
	hedge           time.Duration
	now             func() time.Time // nil means time.Now
	store           Store
}

// WithStrategy sets the order inside a priority tier. The default is Ordered.
func WithStrategy(s Strategy) Option { return func(o *settings) { o.strategy = s } }

// WithCooldowns replaces the cooldown schedules. Start from
// [DefaultCooldowns] and change what you need.
func WithCooldowns(c Cooldowns) Option { return func(o *settings) { o.cooldowns = c } }

// WithClassifier sets a classifier consulted before the default one,
// [Classify]. It decides whenever it returns ok=true.
func WithClassifier(c Classifier) Option { return func(o *settings) { o.classifier = c } }

// WithObserver sets a function called with every [Event]. It is called
// synchronously from the goroutine that caused the event, never while the
// pool holds a lock, so it may call the pool's methods. Keep it fast.
// Several WithObserver options all run, in the order given.
func WithObserver(f func(Event)) Option {
	return func(o *settings) {
		switch prev := o.observer; {
		case f == nil:
		case prev == nil:
			o.observer = f
		default:
			o.observer = func(ev Event) { prev(ev); f(ev) }
		}
	}
}

// WithLogger logs events through l: failed attempts and cooldowns at Warn,
// disabled members at Error, probes and recoveries at Info. Keys are
// redacted. The default is no logging.
func WithLogger(l *slog.Logger) Option { return func(o *settings) { o.logger = l } }

// WithMaxAttempts caps the members one call tries (skipped members do not
// count). The default, 0, tries every member once.
func WithMaxAttempts(n int) Option { return func(o *settings) { o.maxAttempts = n } }

// WithAttemptTimeout bounds each attempt. An attempt that runs out of time is
// classified [ReasonTimeout] and the call fails over; the caller's own
// deadline still bounds the whole call. The default, 0, sets no bound.
func WithAttemptTimeout(d time.Duration) Option { return func(o *settings) { o.attemptTimeout = d } }

// WithWaitForRecovery lets a call wait up to max for the earliest member to
// recover when no member can be tried now, instead of failing at once with
// [ErrUnavailable]. The call never waits past its context's deadline: when
// the recovery comes later than the deadline it fails at once.
func WithWaitForRecovery(max time.Duration) Option {
	return func(o *settings) { o.waitForRecovery = max }
}

// WithStickiness damps flapping: after a call fails over, later calls start
// at the member that took over for d before higher priorities are probed
// again. The default, 0, goes back to the highest priority as soon as its
// cooldown ends.
func WithStickiness(d time.Duration) Option { return func(o *settings) { o.stickiness = d } }

// WithClock runs the pool on virtual time, for simulations and dry runs:
// now replaces time.Now for cooldowns, probes, limits, stickiness and
// Status, and cooldown jitter comes from a fixed sequence per member, so a
// simulation replays exactly. Waits (WithWaitForRecovery, WithHedge,
// attempt timeouts) still use real timers. Tests rarely need it:
// testing/synctest fakes time for the whole pool.
func WithClock(now func() time.Time) Option { return func(o *settings) { o.now = now } }

// CallOption configures one call of [Do].
type CallOption func(callSettings) callSettings

type callSettings struct {
	tokens int
	only   []memberFilter // OnlyModel and OnlyGroup, if any (only.go)
	model  string         // ForModel
}

// Tokens gives the estimated tokens of a call, for TPM and TPD limits.
func Tokens(n int) CallOption {
	return func(c callSettings) callSettings { c.tokens = max(n, 0); return c }
}

// ForModel names the model a call asks for, for the members that pass the
// caller's model through (those with no Model of their own): one that
// answers not_found for it is skipped for that model only, for the
// permanent lane's base window, instead of being benched for every call
// (see Status.Lacks). [OpenAI]'s methods that take a model and
// [Transport] name the model themselves.
func ForModel(model string) CallOption {
	return func(c callSettings) callSettings { c.model = model; return c }
}

// timed reports whether the first attempt of a call is timed.
func (s *settings) timed() bool {
	return s.observer != nil || s.logger != nil || s.attemptTimeout > 0
}

func newSettings(opts []Option) (settings, error) {
	s := settings{cooldowns: DefaultCooldowns()}
	var errs []error
	for i, opt := range opts {
		if opt == nil {
			errs = append(errs, fmt.Errorf("option %d is nil", i))
			continue
		}
		opt(&s)
	}
	if s.strategy < Ordered || s.strategy > LeastInFlight {
		errs = append(errs, fmt.Errorf("WithStrategy: unknown strategy %d", int(s.strategy)))
	}
	if s.maxAttempts < 0 {
		errs = append(errs, fmt.Errorf("WithMaxAttempts: %d is negative", s.maxAttempts))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"WithAttemptTimeout", s.attemptTimeout}, {"WithWaitForRecovery", s.waitForRecovery}, {"WithStickiness", s.stickiness}, {"WithHedge", s.hedge}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s: duration %v is negative", d.name, d.v))
		}
	}
	if b := s.budget; b != nil && (!(b.ratio >= 0 && b.ratio <= 1000) || b.floor < 0) {
		errs = append(errs, fmt.Errorf("WithRetryBudget: ratio %v must be in [0, 1000] and floor %d not negative", b.ratio, b.floor))
	}
	if s.store != nil && isNil(s.store) {
		errs = append(errs, errors.New("WithStore: nil store"))
	}
	errs = append(errs, s.cooldowns.validate()...)
	if err := errors.Join(errs...); err != nil {
		return s, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return s, nil
}
