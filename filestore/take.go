package filestore

import (
	"slices"
	"time"

	"github.com/llmfailover/failover"
)

// take reserves a call of n tokens at now in w, by the rules of
// failover.Store.Take: at most l.RPM calls and l.TPM tokens started in any
// minute (a call started at s counts while s + 1 min is after now), and at
// most l.RPD calls and l.TPD tokens started in the day that ends at
// l.DayEnd(now). It reports whether the call fits, when it may fit if not
// (zero: never), and whether w changed.
func take(w *windowRec, l failover.Limits, n int, now time.Time) (ok bool, at time.Time, changed bool) {
	const minute = int64(time.Minute)
	t := now.UnixNano()
	cutoff := t - minute
	next := t
	daily := l.RPD > 0 || l.TPD > 0
	if l.TPD > 0 && n > l.TPD {
		return false, time.Time{}, false
	}
	counted := l.TPM > 0 && n > 0
	if counted && n > l.TPM {
		return false, time.Time{}, false
	}
	var day *dayRec
	if daily {
		end := l.DayEnd(now)
		// Forget days over for an hour: a pool whose clock lags still
		// counts in its own day meanwhile.
		w.Days = slices.DeleteFunc(w.Days, func(d dayRec) bool { return !now.Before(d.End.Add(time.Hour)) })
		for i := range w.Days {
			if w.Days[i].End.Equal(end) {
				day = &w.Days[i]
			}
		}
		if day == nil {
			w.Days = append(w.Days, dayRec{End: end})
			day = &w.Days[len(w.Days)-1]
		}
		if (l.RPD > 0 && day.Requests >= l.RPD) || (l.TPD > 0 && n > 0 && day.Tokens+n > l.TPD) {
			next = max(next, end.UnixNano())
		}
	}
	if l.RPM > 0 {
		w.Starts = w.Starts[expired(len(w.Starts), func(i int) int64 { return w.Starts[i] }, cutoff):]
		if c := len(w.Starts); c >= l.RPM {
			next = max(next, w.Starts[c-l.RPM]+minute)
		}
	}
	if counted {
		w.Tokens = w.Tokens[expired(len(w.Tokens), func(i int) int64 { return w.Tokens[i][0] }, cutoff):]
		sum := 0
		for _, e := range w.Tokens {
			sum += int(e[1])
		}
		for _, e := range w.Tokens {
			if sum+n <= l.TPM {
				break
			}
			sum -= int(e[1])
			next = max(next, e[0]+minute)
		}
	}
	if next > t {
		return false, time.Unix(0, next), false
	}
	if l.RPM > 0 {
		i, _ := slices.BinarySearch(w.Starts, t+1) // after the calls of the same instant
		w.Starts = slices.Insert(w.Starts, i, t)
	}
	if counted {
		i, _ := slices.BinarySearchFunc(w.Tokens, t+1, func(e [2]int64, t int64) int { return cmpInt(e[0], t) })
		w.Tokens = slices.Insert(w.Tokens, i, [2]int64{t, int64(n)})
	}
	if daily {
		day.Requests++
		day.Tokens += max(n, 0)
	}
	return true, time.Time{}, true
}

// expired returns how many of the first n entries (in order of their times
// at(i)) started at or before cutoff.
func expired(n int, at func(int) int64, cutoff int64) int {
	i := 0
	for i < n && at(i) <= cutoff {
		i++
	}
	return i
}
