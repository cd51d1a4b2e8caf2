package failover_test

import (
	"encoding/json"
	"strings"
	"testing"
	"testing/synctest"
	"time"
	_ "time/tzdata" // the zones below, whatever the machine has

	"github.com/llmfailover/failover"
	"github.com/llmfailover/failover/failovertest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// pacific is where Gemini's free tier resets.
func pacific(t *testing.T) *time.Location {
	t.Helper()
	la, err := time.LoadLocation("America/Los_Angeles")
	require.NoError(t, err)
	return la
}

// sleepUntil moves the fake clock of a synctest bubble to at.
func sleepUntil(at time.Time) { time.Sleep(time.Until(at)) }

// limitedSkip checks that err is ErrUnavailable with one skipped, limited
// attempt on member and returns the *Error.
func limitedSkip(t *testing.T, err error, member string) *failover.Error {
	t.Helper()
	var fe *failover.Error
	require.ErrorAs(t, err, &fe)
	assert.ErrorIs(t, err, failover.ErrUnavailable)
	assert.ErrorIs(t, err, failover.ErrLimited)
	require.Len(t, fe.Attempts, 1)
	a := fe.Attempts[0]
	assert.Equal(t, member, a.Member)
	assert.True(t, a.Skipped)
	assert.Equal(t, failover.ReasonLimited, a.Reason)
	return fe
}

// A call every 10 minutes for three days around the spring DST change in
// Los Angeles: the RPD 50 member serves exactly 50 calls in each calendar
// day there (24 h, then 23 h, then 24 h), the fallback the rest.
func TestRPDCountsPerCalendarDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		la := pacific(t)
		a, b := &fakeClient{}, &fakeClient{}
		ms := members(a, b)
		ms[0].Limits = failover.Limits{RPD: 50, DayZone: "America/Los_Angeles"}
		p := newPool(t, ms)
		start := time.Date(2026, 3, 7, 0, 0, 0, 0, la)
		end := time.Date(2026, 3, 10, 0, 0, 0, 0, la)
		sleepUntil(start)
		perDay := map[string]map[string]int{}
		for time.Now().Before(end) {
			got, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
			day := time.Now().In(la).Format("2006-01-02")
			if perDay[day] == nil {
				perDay[day] = map[string]int{}
			}
			perDay[day][got]++
			time.Sleep(10 * time.Minute)
		}
		assert.Equal(t, map[string]map[string]int{
			"2026-03-07": {"a": 50, "b": 24*6 - 50},
			"2026-03-08": {"a": 50, "b": 23*6 - 50}, // clocks jump from 2:00 to 3:00
			"2026-03-09": {"a": 50, "b": 24*6 - 50},
		}, perDay)
		assert.EqualValues(t, 150, a.calls.Load(), "no call reached a over its day")
		assert.EqualValues(t, 3*24*6-6-150, b.calls.Load())
	})
}

// A member whose day is spent is skipped with no upstream call until
// midnight in its zone, to the nanosecond: ErrLimited, RetryAt at the
// reset, and WithWaitForRecovery waits for it when it fits.
func TestRPDSkipsUntilMidnight(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		la := pacific(t)
		sleepUntil(time.Date(2026, 6, 10, 18, 0, 0, 0, la))
		midnight := time.Date(2026, 6, 11, 0, 0, 0, 0, la)
		a := &fakeClient{}
		ms := members(a)
		ms[0].Limits = failover.Limits{RPD: 2, DayZone: "America/Los_Angeles"}
		p := newPool(t, ms)
		for range 2 {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
		}
		_, err := failover.Do(ctx, p, call)
		fe := limitedSkip(t, err, "a")
		assert.True(t, midnight.Equal(fe.RetryAt), "%v, want %v", fe.RetryAt, midnight)
		assert.Contains(t, err.Error(), "over its limits until 2026-06-11T07:00:00Z")
		assert.EqualValues(t, 2, a.calls.Load(), "no upstream call once the day is spent")

		sleepUntil(midnight.Add(-time.Nanosecond))
		_, err = failover.Do(ctx, p, call)
		limitedSkip(t, err, "a")
		assert.EqualValues(t, 2, a.calls.Load())
		st := status(t, p, "a")
		assert.Equal(t, 2, st.RequestsToday)
		assert.True(t, midnight.Equal(st.DayEnds), "%v, want %v", st.DayEnds, midnight)
		assert.EqualValues(t, 2, st.Limited)

		time.Sleep(time.Nanosecond)
		_, err = failover.Do(ctx, p, call)
		require.NoError(t, err, "a new day at midnight in Los Angeles")
		assert.EqualValues(t, 3, a.calls.Load())
		st = status(t, p, "a")
		assert.Equal(t, 1, st.RequestsToday)
		assert.True(t, midnight.AddDate(0, 0, 1).Equal(st.DayEnds), "%v", st.DayEnds)

		// The last resort waits for the reset when the budget allows it.
		w := members(&fakeClient{})
		w[0].Limits = failover.Limits{RPD: 1, DayZone: "America/Los_Angeles"}
		wp := newPool(t, w, failover.WithWaitForRecovery(24*time.Hour))
		sleepUntil(time.Date(2026, 6, 11, 21, 30, 0, 0, la))
		_, err = failover.Do(ctx, wp, call)
		require.NoError(t, err)
		before := time.Now()
		_, err = failover.Do(ctx, wp, call)
		require.NoError(t, err)
		assert.Equal(t, 150*time.Minute, time.Since(before), "waited until midnight")
		assert.EqualValues(t, 2, w[0].Client.calls.Load())
	})
}

// The day is a calendar day in DayZone: 23 hours on the day the clocks
// spring forward, 25 on the day they fall back, and UTC's without a zone.
func TestDayResetAcrossDST(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		la := pacific(t)
		for _, tc := range []struct {
			zone  string
			day   time.Time // its local midnight
			hours int
		}{
			{"America/Los_Angeles", time.Date(2026, 3, 8, 0, 0, 0, 0, la), 23},
			{"America/Los_Angeles", time.Date(2026, 6, 10, 0, 0, 0, 0, la), 24},
			{"America/Los_Angeles", time.Date(2026, 11, 1, 0, 0, 0, 0, la), 25},
			{"", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), 24},
		} {
			name := tc.zone + " " + tc.day.Format("2006-01-02")
			sleepUntil(tc.day.Add(30 * time.Minute))
			c := &fakeClient{}
			ms := members(c)
			ms[0].Limits = failover.Limits{RPD: 1, DayZone: tc.zone}
			p := newPool(t, ms)
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err, name)
			_, err = failover.Do(ctx, p, call)
			fe := limitedSkip(t, err, "a")
			want := tc.day.Add(time.Duration(tc.hours) * time.Hour)
			assert.True(t, want.Equal(fe.RetryAt), "%v, want %v %s", fe.RetryAt, want, name)
			assert.Equal(t, 0, fe.RetryAt.In(tc.day.Location()).Hour(), name+": the reset is at local midnight")
			assert.True(t, want.Equal(ms[0].Limits.DayEnd(time.Now())), "%v, want %v %s", ms[0].Limits.DayEnd(time.Now()), want, name)

			sleepUntil(want.Add(-time.Nanosecond))
			_, err = failover.Do(ctx, p, call)
			limitedSkip(t, err, "a")
			time.Sleep(time.Nanosecond)
			_, err = failover.Do(ctx, p, call)
			require.NoError(t, err, name)
			assert.EqualValues(t, 2, c.calls.Load(), name)
		}
	})
}

// Where the clocks skip midnight (Santiago springs from 24:00 to 01:00),
// the day ends when they jump into the next day, not an hour before.
func TestDayEndWithoutMidnight(t *testing.T) {
	scl, err := time.LoadLocation("America/Santiago")
	require.NoError(t, err)
	l := failover.Limits{RPD: 1, DayZone: "America/Santiago"}
	end := l.DayEnd(time.Date(2026, 9, 5, 12, 0, 0, 0, scl))
	assert.Equal(t, time.Date(2026, 9, 6, 4, 0, 0, 0, time.UTC), end.UTC())
	assert.Equal(t, "2026-09-06 01:00", end.In(scl).Format("2006-01-02 15:04"))
	assert.Equal(t, time.Date(2026, 9, 7, 0, 0, 0, 0, scl), l.DayEnd(end), "the next day starts at the jump")
	assert.Equal(t, time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), failover.Limits{}.DayEnd(time.Date(2026, 1, 1, 23, 59, 59, 0, time.UTC)))
}

// TPD counts the tokens given with Tokens; a call larger than TPD never
// fits: it skips the member at once, RetryAt zero, without waiting.
func TestTPDLimit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		la := pacific(t)
		sleepUntil(time.Date(2026, 6, 10, 23, 0, 0, 0, la))
		midnight := time.Date(2026, 6, 11, 0, 0, 0, 0, la)
		a, b := &fakeClient{}, &fakeClient{}
		ms := members(a, b)
		ms[0].Limits = failover.Limits{TPD: 1000, DayZone: "America/Los_Angeles"}
		p := newPool(t, ms)
		for _, want := range []string{"a", "a", "b"} {
			got, err := failover.Do(ctx, p, call, failover.Tokens(400))
			require.NoError(t, err)
			assert.Equal(t, want, got)
		}
		got, err := failover.Do(ctx, p, call, failover.Tokens(200))
		require.NoError(t, err)
		assert.Equal(t, "a", got, "200 more fit the day's 1,000")
		st := status(t, p, "a")
		assert.Equal(t, 3, st.RequestsToday)
		assert.Equal(t, 1000, st.TokensToday)
		assert.True(t, midnight.Equal(st.DayEnds), "%v, want %v", st.DayEnds, midnight)

		only := members(&fakeClient{})
		only[0].Limits = failover.Limits{TPD: 1000, DayZone: "America/Los_Angeles"}
		wp := newPool(t, only, failover.WithWaitForRecovery(48*time.Hour))
		before := time.Now()
		_, err = failover.Do(ctx, wp, call, failover.Tokens(1001))
		fe := limitedSkip(t, err, "a")
		assert.True(t, fe.RetryAt.IsZero(), "it never fits")
		assert.Zero(t, time.Since(before), "no wait for a call that never fits")
		assert.Contains(t, err.Error(), "larger than its TPM, TPD or context")
		assert.Zero(t, only[0].Client.calls.Load())

		_, err = failover.Do(ctx, wp, call, failover.Tokens(900))
		require.NoError(t, err)
		_, err = failover.Do(ctx, wp, call, failover.Tokens(101))
		require.NoError(t, err, "waited for midnight")
		assert.Equal(t, midnight.UTC(), time.Now().UTC())
		assert.EqualValues(t, 2, only[0].Client.calls.Load())

		np := newPool(t, only)
		_, err = failover.Do(ctx, np, call, failover.Tokens(1000))
		require.NoError(t, err)
		_, err = failover.Do(ctx, np, call, failover.Tokens(1))
		fe = limitedSkip(t, err, "a")
		assert.True(t, midnight.AddDate(0, 0, 1).Equal(fe.RetryAt), "%v", fe.RetryAt)
	})
}

// Status and its JSON show the day's counts and end; a member without
// daily limits shows zeros and no day_ends.
func TestDailyLimitsStatus(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		la := pacific(t)
		sleepUntil(time.Date(2026, 6, 10, 12, 0, 0, 0, la))
		ms := members(&fakeClient{}, &fakeClient{})
		ms[0].Limits = failover.Limits{RPM: 10, RPD: 100, TPD: 5000, DayZone: "America/Los_Angeles"}
		p := newPool(t, ms)
		st := status(t, p, "a")
		assert.Zero(t, st.RequestsToday)
		assert.Equal(t, time.Date(2026, 6, 11, 0, 0, 0, 0, la).UTC(), st.DayEnds.UTC(), "the day ends before any call")
		for range 3 {
			_, err := failover.Do(ctx, p, call, failover.Tokens(250))
			require.NoError(t, err)
		}
		b, err := json.Marshal(p.Status())
		require.NoError(t, err)
		var got []map[string]any
		require.NoError(t, json.Unmarshal(b, &got))
		assert.EqualValues(t, 3, got[0]["requests_today"])
		assert.EqualValues(t, 750, got[0]["tokens_today"])
		assert.Equal(t, "2026-06-11T00:00:00-07:00", got[0]["day_ends"])
		assert.Equal(t, map[string]any{"rpm": 10.0, "rpd": 100.0, "tpd": 5000.0, "day_zone": "America/Los_Angeles"}, got[0]["limits"])
		assert.EqualValues(t, 0, got[1]["requests_today"])
		assert.NotContains(t, got[1], "day_ends")
		assert.True(t, status(t, p, "b").DayEnds.IsZero())

		// The counts of a day that is over read zero, before any call.
		sleepUntil(time.Date(2026, 6, 11, 0, 0, 0, 0, la))
		st = status(t, p, "a")
		assert.Zero(t, st.RequestsToday)
		assert.Zero(t, st.TokensToday)
		assert.Equal(t, time.Date(2026, 6, 12, 0, 0, 0, 0, la).UTC(), st.DayEnds.UTC())
	})
}

// A DayZone that is no zone, or a negative RPD or TPD, is a clear error
// of New and Update, never a panic.
func TestDailyLimitsInvalid(t *testing.T) {
	bad := members(&fakeClient{})
	bad[0].Limits = failover.Limits{RPD: 10, DayZone: "Mars/Olympus_Mons"}
	_, err := failover.New(bad)
	require.ErrorIs(t, err, failover.ErrInvalid)
	assert.Contains(t, err.Error(), `Limits.DayZone "Mars/Olympus_Mons" is not a time zone`)

	neg := members(&fakeClient{})
	neg[0].Limits = failover.Limits{RPD: -1, TPD: -2}
	_, err = failover.New(neg)
	require.ErrorIs(t, err, failover.ErrInvalid)
	assert.Contains(t, err.Error(), "Limits.RPD -1 is negative")
	assert.Contains(t, err.Error(), "Limits.TPD -2 is negative")

	p := newPool(t, members(&fakeClient{}))
	err = p.Update(bad)
	require.ErrorIs(t, err, failover.ErrInvalid)
	assert.True(t, strings.Contains(err.Error(), "DayZone"), err.Error())
	assert.Zero(t, p.Status()[0].Limits, "a bad Update changes nothing")

	for _, zone := range []string{"", "UTC", "Europe/Berlin", "Asia/Kolkata"} {
		ok := members(&fakeClient{})
		ok[0].Limits = failover.Limits{TPD: 1, DayZone: zone}
		_, err := failover.New(ok)
		assert.NoError(t, err, zone)
	}
}

// An Update with the same daily limits keeps the day's counts; other
// limits start it afresh.
func TestDailyLimitsUpdate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &fakeClient{}
		ms := members(c)
		ms[0].Limits = failover.Limits{RPD: 2}
		p := newPool(t, ms)
		for range 2 {
			_, err := failover.Do(ctx, p, call)
			require.NoError(t, err)
		}
		require.NoError(t, p.Update(ms))
		_, err := failover.Do(ctx, p, call)
		limitedSkip(t, err, "a")
		ms[0].Limits.DayZone = "Europe/Berlin"
		require.NoError(t, p.Update(ms))
		_, err = failover.Do(ctx, p, call)
		require.NoError(t, err, "a new zone counts afresh")
		assert.Equal(t, 1, p.Status()[0].RequestsToday)
	})
}

// Through go-openai: a free key with RPD 2 takes two chat calls, the paid
// key the rest, and the free key hears nothing more until midnight in Los
// Angeles.
func TestRPDThroughOpenAI(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		la := pacific(t)
		sleepUntil(time.Date(2026, 6, 10, 20, 0, 0, 0, la))
		srv := failovertest.NewServer()
		ms := failover.OpenAIKeys("k", srv.Config, "free", "paid")
		ms[0].Limits = failover.Limits{RPD: 2, DayZone: "America/Los_Angeles"}
		p, err := failover.New(ms)
		require.NoError(t, err)
		client := failover.NewOpenAI(p)
		for range 5 {
			_, err := client.CreateChatCompletion(ctx, chatReq)
			require.NoError(t, err)
		}
		assert.Equal(t, []int{2, 3}, []int{srv.Calls("free"), srv.Calls("paid")})
		sleepUntil(time.Date(2026, 6, 11, 0, 0, 0, 0, la))
		_, err = client.CreateChatCompletion(ctx, chatReq)
		require.NoError(t, err)
		assert.Equal(t, []int{3, 3}, []int{srv.Calls("free"), srv.Calls("paid")})
	})
}
