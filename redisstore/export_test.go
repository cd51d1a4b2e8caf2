package redisstore

import "time"

// WithPingEvery sets how long the listener waits for a message before it
// pings Redis (15 s outside tests).
func WithPingEvery(d time.Duration) Option { return func(s *Store) { s.pingEvery = d } }
