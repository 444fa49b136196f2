// The four workloads of ANCHORS.md in Go with GOMAXPROCS=1: unbuffered channels, Gosched, and
// goroutines joined with a WaitGroup. It mirrors bench/harness.hpp: one warm-up run, then the
// median of 5 runs per timing workload (--time, the default); --memory measures in a fresh
// process; --scale K runs the scale workloads at k = K, as defined at the top of harness.hpp.
package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

const (
	pingpongRoundTrips = 500_000
	scheduleTasklets   = 100
	scheduleYields     = 5_000
	spawnTasklets      = 200_000
	memoryTasklets     = 100_000
	measuredRuns       = 5
	scaleOperations    = 2_000_000 // switches (wakes) timed at every k, in at least 2 rounds
	scaleRuns          = 3         // timed runs of scaleRounds(k) rounds; the median counts
	scaleBudgetSeconds = 30        // at most, for the timed runs of a scale workload
)

func pingpong() {
	ping, pong := make(chan int), make(chan int)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for i := 0; i < pingpongRoundTrips; i++ {
			ping <- i
			<-pong
		}
	}()
	go func() {
		defer wg.Done()
		for i := 0; i < pingpongRoundTrips; i++ {
			pong <- <-ping
		}
	}()
	wg.Wait()
}

func schedule() {
	var wg sync.WaitGroup
	wg.Add(scheduleTasklets)
	for t := 0; t < scheduleTasklets; t++ {
		go func() {
			defer wg.Done()
			for i := 0; i < scheduleYields; i++ {
				runtime.Gosched()
			}
		}()
	}
	wg.Wait()
}

func spawnRun() {
	var wg sync.WaitGroup
	wg.Add(spawnTasklets)
	for t := 0; t < spawnTasklets; t++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
}

// medianNsPerOp runs workload once to warm up, then measuredRuns times; the median, in ns/op.
func medianNsPerOp(figure string, workload func(), ops float64) float64 {
	once := func() float64 {
		start := time.Now() // monotonic clock
		workload()
		return float64(time.Since(start).Nanoseconds()) / ops
	}
	once()
	ns := make([]float64, measuredRuns)
	for i := range ns {
		ns[i] = once()
	}
	if os.Getenv("BENCH_VERBOSE") != "" {
		fmt.Fprintln(os.Stderr, figure, "runs:", ns)
	}
	sort.Float64s(ns)
	return ns[measuredRuns/2]
}

// residentBytes reads the resident set size (second field of /proc/self/statm, in pages).
func residentBytes() float64 {
	f, err := os.Open("/proc/self/statm")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	var size, resident int64
	if _, err := fmt.Fscan(bufio.NewReader(f), &size, &resident); err != nil {
		panic(err)
	}
	return float64(resident * int64(os.Getpagesize()))
}

func memory() float64 {
	ch := make(chan int)
	var blocked atomic.Int32
	before := residentBytes()
	for t := 0; t < memoryTasklets; t++ {
		go func() {
			blocked.Add(1)
			<-ch
		}()
	}
	// A goroutine can in principle be preempted between the Add and the receive, but by then
	// its stack and closure exist, which is all the measurement needs.
	for blocked.Load() < memoryTasklets {
		runtime.Gosched()
	}
	after := residentBytes()
	// The blocked goroutines simply end with the process.
	return (after - before) / memoryTasklets
}

// phase tells on stderr, with BENCH_VERBOSE set, when a phase of a scale workload ends (seconds
// since the first call), to see where a run's untimed time goes.
var phaseStart time.Time

func phase(what string) {
	if phaseStart.IsZero() {
		phaseStart = time.Now()
	}
	if os.Getenv("BENCH_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, "%8.3f s %s\n", time.Since(phaseStart).Seconds(), what)
	}
}

func scaleRounds(k int) int {
	if scaleOperations/k < 2 {
		return 2
	}
	return scaleOperations / k
}

func scaleFigure(workload string, k int) string {
	return fmt.Sprintf("%s_k%d_ns", workload, k)
}

// timeRounds runs round(0) and round(1) untimed (the budget is judged from the second: the first
// pays for first starts), then scaleRuns timed runs of `rounds` rounds each (round(2), ...); count() tells how many operations (yields, wakes) have been made so far. It
// returns the median over the runs of ns per operation counted; NaN, with a note on stderr, if
// by the untimed round's duration the runs would exceed scaleBudgetSeconds (and then they do not
// run). With BENCH_VERBOSE set, every run is also shown on stderr.
func timeRounds(figure string, rounds int, round func(int), count func() int) float64 {
	round(0)
	start := time.Now()
	round(1)
	untimed := float64(time.Since(start).Nanoseconds())
	phase(figure + ": untimed rounds")
	if untimed*float64(rounds*scaleRuns) > scaleBudgetSeconds*1e9 {
		fmt.Fprintf(os.Stderr, "go %s: not measured: the untimed round took %.1f s, so %d timed "+
			"runs of %d rounds would exceed the budget of %.0f s\n", figure, untimed/1e9,
			scaleRuns, rounds, float64(scaleBudgetSeconds))
		return math.NaN()
	}
	ns := make([]float64, scaleRuns)
	next := 2
	for i := range ns {
		before := count()
		start = time.Now()
		for r := 0; r < rounds; r++ {
			round(next)
			next++
		}
		ns[i] = float64(time.Since(start).Nanoseconds()) / float64(count()-before)
	}
	if os.Getenv("BENCH_VERBOSE") != "" {
		fmt.Fprintf(os.Stderr, "%s runs:", figure)
		for _, x := range ns {
			fmt.Fprintf(os.Stderr, " %.1f", x)
		}
		fmt.Fprintln(os.Stderr)
	}
	phase(figure + ": timed runs")
	sort.Float64s(ns)
	return ns[scaleRuns/2]
}

// What the goroutines of the scale workloads share with the main goroutine. Plain variables:
// with GOMAXPROCS=1 one goroutine runs at a time, and every hand-over goes through the
// scheduler, which orders their accesses.
var started, yields, received, misordered, target int

func wakeK(k int) (nsPerWake, bytesPerTasklet float64) {
	ch := make(chan int)
	done := make(chan struct{}, 1) // buffered: the last receiver never waits for main
	var wg sync.WaitGroup
	wg.Add(k)

	before := residentBytes()
	for t := 0; t < k; t++ {
		go func() {
			defer wg.Done()
			started++
			expected := 0
			for v := range ch {
				if v != expected {
					misordered++
				}
				expected++
				received++
				if received == target {
					done <- struct{}{}
				}
			}
		}()
	}
	// A goroutine runs from started++ to blocking in the receive without a switch (unless
	// preempted, after 10 ms), so once all have started and main runs again, all are blocked.
	for started < k {
		runtime.Gosched()
	}
	after := residentBytes()
	phase("wake: created, all blocked")
	runtime.GC() // creating them made garbage: not to be collected while timing
	phase("wake: collected")

	// A send to a waiting receiver only makes it runnable; main goes on sending, the receivers
	// run once it waits for the round's last one to signal, and block again at the end of the
	// channel's queue.
	rounds := scaleRounds(k)
	ns := timeRounds(scaleFigure("wake", k), rounds, func(r int) {
		target += k
		for t := 0; t < k; t++ {
			ch <- r
		}
		<-done
	}, func() int { return received })
	roundsRun := 2
	if !math.IsNaN(ns) {
		roundsRun += scaleRuns * rounds
	}
	if received != roundsRun*k || misordered != 0 {
		panic("wake: a goroutine missed a value or got one twice")
	}

	close(ch)
	wg.Wait()
	phase("wake: ended")
	return ns, (after - before) / float64(k)
}

// The yielders of scheduleK: a named function with no captures, so that starting one allocates
// nothing on the heap (they reuse the g structures of wakeK's goroutines).
var stopYielding atomic.Bool
var yielders sync.WaitGroup

func yielder() {
	defer yielders.Done()
	started++
	for !stopYielding.Load() {
		runtime.Gosched()
		yields++
	}
}

func scheduleK(k int) float64 {
	// Collect wakeK's garbage now, while nothing else is runnable: runtime.GC() yields once per
	// span it sweeps, which with k goroutines runnable takes seconds (18 s at k = 30,000).
	runtime.GC()
	phase("schedule: collected")
	stopYielding.Store(false)
	started, yields = 0, 0
	yielders.Add(k)
	for t := 0; t < k; t++ {
		go yielder()
	}
	for started < k {
		runtime.Gosched()
	}
	phase("schedule: created, all started")

	ns := timeRounds(scaleFigure("schedule", k), scaleRounds(k), func(int) {
		runtime.Gosched()
		yields++
	}, func() int { return yields })

	stopYielding.Store(true)
	yielders.Wait()
	phase("schedule: ended")
	return ns
}

func report(figure string, value float64) {
	fmt.Printf("cpp go %s %.1f\n", figure, value)
}

func timed(figure string, workload func(), ops float64) {
	report(figure, medianNsPerOp(figure, workload, ops))
}

func main() {
	runtime.GOMAXPROCS(1)
	mode := "--time"
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	switch mode {
	case "--time":
		timed("pingpong_ns_per_transfer", pingpong, 2*pingpongRoundTrips)
		timed("schedule_ns_per_switch", schedule, scheduleTasklets*scheduleYields)
		timed("spawn_run_ns_per_tasklet", spawnRun, spawnTasklets)
	case "--memory":
		report("memory_bytes_per_blocked_tasklet", memory())
	case "--scale":
		k := 0
		if len(os.Args) > 2 {
			k, _ = strconv.Atoi(os.Args[2])
		}
		if k <= 0 {
			fmt.Fprintf(os.Stderr, "usage: %s --scale K\n", os.Args[0])
			os.Exit(2)
		}
		// The wake workload first, so that bytes_k is measured in a fresh process.
		phase("start")
		// A figure that was not measured (NaN) is left out.
		reportMeasured := func(figure string, value float64) {
			if !math.IsNaN(value) {
				report(figure, value)
			}
		}
		ns, bytes := wakeK(k)
		reportMeasured(scaleFigure("wake", k), ns)
		reportMeasured(fmt.Sprintf("bytes_k%d", k), bytes)
		reportMeasured(scaleFigure("schedule", k), scheduleK(k))
	default:
		fmt.Fprintf(os.Stderr, "usage: %s [--time | --memory | --scale K]\n", os.Args[0])
		os.Exit(2)
	}
}
