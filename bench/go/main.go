// The four workloads of ANCHORS.md in Go with GOMAXPROCS=1: unbuffered channels, Gosched, and
// goroutines joined with a WaitGroup. It mirrors bench/harness.hpp: one warm-up run, then the
// median of 5 runs per timing workload (--time, the default); --memory measures in a fresh process.
package main

import (
	"bufio"
	"fmt"
	"os"
	"runtime"
	"sort"
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
	default:
		fmt.Fprintf(os.Stderr, "usage: %s [--time | --memory]\n", os.Args[0])
		os.Exit(2)
	}
}
