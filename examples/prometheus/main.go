// Command prometheus serves a failover pool's OpenTelemetry metrics in the
// Prometheus text format, through the OpenTelemetry Prometheus exporter:
// no keys, no network but the /metrics listener.
//
// The pool runs on a fake provider (failovertest) and a virtual clock: a
// free key that gets rate limited, a revoked key and a paid fallback. At
// start it drives a scripted run (failovers, a stream, a probe that
// recovers the free key, a hedge, a retry-budget refusal and an outage),
// then serves /metrics:
//
//	go run . &
//	curl -s localhost:9464/metrics | grep failover_
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"time"
)

func main() {
	addr := flag.String("addr", "localhost:9464", "address to serve /metrics on")
	flag.Parse()

	d, err := newDemo()
	if err != nil {
		log.Fatal(err)
	}
	defer func() { _ = d.close() }()
	if err := d.run(context.Background()); err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("/metrics", d.handler)
	log.Printf("serving the pool's metrics on http://%s/metrics", *addr)
	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
