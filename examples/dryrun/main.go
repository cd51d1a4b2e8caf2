// Command dryrun audits rotation without real providers: it replays four
// failure scenarios on virtual time against the real failover.Pool and
// three simple baselines, and prints what each did.
package main

import (
	"os"

	"github.com/llmfailover/failover/internal/sim"
)

func main() {
	sim.Print(os.Stdout, sim.Audit())
}
