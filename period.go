package failover

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// A period quota (per day, week or month) is spent for hours, not seconds:
// a verdict that names one is a quota, resting the member until the
// provider's reset when the provider gives it (or, for Google, when its
// documented reset is known), otherwise on the quota lane.

// maxPeriodHint bounds the wait until a period quota's reset: the quota
// lane's cap. Ordinary hints stop at MaxRetryHint.
const maxPeriodHint = 24 * time.Hour

// quotaHintMax is the longest retry hint that still marks a worded-as-quota
// 429 as a rate limit.
const quotaHintMax = 10 * time.Minute

var (
	// longPeriod finds a limit of a day or longer: "tokens per day (TPD)",
	// "daily limit", "Weekly/Monthly Limit Exhausted", OpenRouter's
	// "free-models-per-day", Cohere's "1000 API calls / month".
	longPeriod = regexp.MustCompile(`(?i)(?:^|[^a-z0-9_])(?:(?:per|a|each)[- ](?:day|week|month)|(?:daily|weekly|monthly)(?: free)? (?:usage |request |token )?(?:limit|quota|allocation|allowance|cap)s?|rpd|tpd|/ ?(?:day|week|month))(?:$|[^a-z0-9_])|每日|每天|今日|本周|每周|本月|每月`)
	// googleDay and googleMinute find the period of a Google quota: a
	// QuotaFailure quotaId (GenerateRequestsPerDayPerProjectPerModel-FreeTier)
	// or a metric name (…/generate_content_requests_per_minute_per_…). A
	// Google quota metric without a period is a per-minute one.
	googleDay    = regexp.MustCompile(`Per(?:Day|Week|Month)|_per_day`)
	googleMinute = regexp.MustCompile(`Per(?:Minute|Second)|_per_minute|(?i:per minute)|googleapis\.com/[a-z_]+`)
	// limitZero is a Google quota of nothing ("limit: 0"): the free tier
	// does not include the model, and no wait helps.
	limitZero = regexp.MustCompile(`(?:^|[^a-z0-9_])limit: 0(?:$|[^0-9])`)
	// resetAt finds the reset a provider writes out: Anthropic's "You will
	// regain access on 2026-04-01 at 00:00 UTC", Zhipu's "Your limit will
	// reset at 2025-09-01 10:00:00" (China Standard Time unless it says
	// otherwise) or "将在 … 重置".
	resetAt = regexp.MustCompile(`(?i)(?:reset|regain access)\D{0,20}(\d{4}-\d\d-\d\d)(?: at |[ T])(\d\d:\d\d(?::\d\d)?)( ?UTC| ?Z)?|(\d{4}-\d\d-\d\d) (\d\d:\d\d(?::\d\d)?)( ?UTC)? ?重置`)
)

// periodVerdict settles the retry hint of v and, for a rate limit or a
// quota, whether it is a period quota: a long period makes it a quota with
// the wait until its reset (up to maxPeriodHint); a Google per-minute quota,
// or a quota-worded 429 with a short hint and no quota code, is a rate
// limit. Any other hint is capped at MaxRetryHint; a reason that stops the
// call has none.
func periodVerdict(v Verdict, f errInfo, hint time.Duration, now time.Time) Verdict {
	if !v.Reason.FailsOver() {
		return v
	}
	v.RetryAfter = capHint(hint)
	if v.Reason != ReasonRateLimit && v.Reason != ReasonQuota {
		return v
	}
	text := f.msg + " " + head(string(f.body))
	switch {
	case limitZero.MatchString(f.msg):
		v.Reason, v.RetryAfter = ReasonQuota, 0
	case longPeriod.MatchString(f.msg) || (google(f) && googleDay.MatchString(text)):
		v.Reason, v.Reset = ReasonQuota, true
		if google(f) && googleDay.MatchString(text) {
			// Google's daily quotas reset at midnight Pacific time; a
			// retryDelay of seconds on a spent daily quota is not the reset.
			hint = max(hint, untilPacificMidnight(now))
		}
		if hint == 0 {
			hint = writtenReset(f, now)
		}
		v.RetryAfter = periodCap(hint)
	case v.Reason == ReasonQuota && !quotaCoded(f) && v.Status == http.StatusTooManyRequests &&
		(googleMinute.MatchString(text) || (v.RetryAfter > 0 && v.RetryAfter <= quotaHintMax)):
		// Gemini words its per-minute limits like OpenAI's billing error
		// ("You exceeded your current quota, please check your plan and
		// billing details") with a short retry delay.
		v.Reason = ReasonRateLimit
	case v.Reason == ReasonQuota && hint == 0:
		v.RetryAfter = periodCap(writtenReset(f, now))
		v.Reset = v.RetryAfter > 0
	}
	return v
}

// google reports whether f is a Google API error: a google.rpc status or
// a googleapis.com quota.
func google(f errInfo) bool {
	return strings.Contains(f.codes, "resource_exhausted") || strings.Contains(f.msg, "googleapis.com") || bytes.Contains(f.body, []byte("googleapis.com"))
}

// writtenReset is the time until a reset written out in f's message, or 0.
func writtenReset(f errInfo, now time.Time) time.Duration {
	m := resetAt.FindStringSubmatch(f.msg)
	if m == nil {
		return 0
	}
	date, clock, utc := m[1], m[2], m[3]
	if date == "" {
		date, clock, utc = m[4], m[5], m[6]
	}
	if len(clock) == 5 {
		clock += ":00"
	}
	loc := time.UTC
	if utc == "" && zhipu(f) {
		loc = time.FixedZone("CST", 8*60*60)
	}
	t, err := time.ParseInLocation("2006-01-02 15:04:05", date+" "+clock, loc)
	if err != nil || !t.After(now) {
		return 0
	}
	return t.Sub(now)
}

// zhipu reports whether f is one of Zhipu's errors: a Zhipu code, or
// Chinese text.
func zhipu(f errInfo) bool {
	for _, c := range strings.Fields(f.codes) {
		if _, ok := zhipuCodes[c]; ok {
			return true
		}
	}
	for _, r := range f.msg {
		if unicode.Is(unicode.Han, r) {
			return true
		}
	}
	return false
}

// untilPacificMidnight is the time from now to the next midnight in
// America/Los_Angeles, computed from the US daylight-saving rule (second
// Sunday of March to first Sunday of November, at 02:00 local) so that it
// needs no time zone database.
func untilPacificMidnight(now time.Time) time.Duration {
	offset := pacificOffset(now)
	t := now.In(time.FixedZone("Pacific", int(offset/time.Second)))
	next := time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.FixedZone("Pacific", int(offset/time.Second)))
	// Between 00:00 and 02:00 of a change day the next midnight has the
	// other offset: build it again with the offset it has.
	if o := pacificOffset(next); o != offset {
		next = time.Date(t.Year(), t.Month(), t.Day()+1, 0, 0, 0, 0, time.FixedZone("Pacific", int(o/time.Second)))
	}
	return next.Sub(now)
}

// pacificOffset is America/Los_Angeles's UTC offset at t.
func pacificOffset(t time.Time) time.Duration {
	y := t.UTC().Year()
	start := nthSunday(y, time.March, 2).Add(10 * time.Hour) // 02:00 PST
	end := nthSunday(y, time.November, 1).Add(9 * time.Hour) // 02:00 PDT
	if !t.Before(start) && t.Before(end) {
		return -7 * time.Hour
	}
	return -8 * time.Hour
}

// nthSunday is 00:00 UTC of the n-th Sunday of month m in year y.
func nthSunday(y int, m time.Month, n int) time.Time {
	first := time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
	days := (7 - int(first.Weekday())) % 7
	return first.AddDate(0, 0, days+7*(n-1))
}

// quotaCoded reports whether a decisive code of f says quota.
func quotaCoded(f errInfo) bool {
	r, decisive := reasonFromCodes(f.codes, f.status)
	return decisive && r == ReasonQuota
}
