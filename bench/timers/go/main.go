// The Go peer of the timer benchmark (bench/timers/run.sh): N goroutines (default 1,000,000;
// TIMER_COUNT or the first argument overrides) each sleep a uniformly random time in [0, 1) s
// with time.Sleep. GOMAXPROCS is 1 unless the environment sets it: the system this is compared
// with runs on one thread. Prints `cpp go timer_overhead_ns`, `timer_bytes_per_sleeper` and
// `timer_cpu_ns_per_timer` (definitions in bench/timers/run.sh).
package main

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func sleeperCount() int {
	text := os.Getenv("TIMER_COUNT")
	if len(os.Args) > 1 {
		text = os.Args[1]
	}
	if text == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(text)
	if err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "usage: timer_go [count]   (or TIMER_COUNT)")
		os.Exit(2)
	}
	return n
}

// VmRSS of /proc/self/status, in bytes.
func residentBytes() float64 {
	f, err := os.Open("/proc/self/status")
	if err == nil {
		defer f.Close()
		for s := bufio.NewScanner(f); s.Scan(); {
			if fields := strings.Fields(s.Text()); len(fields) >= 2 && fields[0] == "VmRSS:" {
				kb, _ := strconv.ParseFloat(fields[1], 64)
				return kb * 1024
			}
		}
	}
	fmt.Fprintln(os.Stderr, "timer_go: no VmRSS in /proc/self/status")
	os.Exit(1)
	return 0
}

func cpuNs() int64 {
	var u syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &u)
	return u.Utime.Nano() + u.Stime.Nano()
}

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	count := sleeperCount()
	// Everything that is not per sleeper exists and is touched before the baseline: the
	// durations (fixed seed) and the records.
	random := rand.New(rand.NewSource(1))
	duration := make([]int64, count)
	deadline := make([]int64, count)
	finished := make([]int64, count)
	for i := range duration {
		duration[i] = random.Int63n(1_000_000_000)
		deadline[i], finished[i] = -1, -1
	}
	var started, woken int64
	var wg sync.WaitGroup
	wg.Add(count)
	base := time.Now()
	runtime.GC()

	rssBefore := residentBytes()
	cpuBefore := cpuNs()
	for i := 0; i < count; i++ {
		go func(i int) {
			atomic.AddInt64(&started, 1)
			deadline[i] = int64(time.Since(base)) + duration[i]
			time.Sleep(time.Duration(duration[i]))
			finished[i] = int64(time.Since(base))
			atomic.AddInt64(&woken, 1)
			wg.Done()
		}(i)
	}
	for atomic.LoadInt64(&started) < int64(count) {
		runtime.Gosched()
	}
	rssSleeping := residentBytes()
	// Sleepers that woke before the last one started (the spawning took longer than their
	// sleep) no longer count in that memory; their goroutines may have been reused.
	fmt.Fprintf(os.Stderr, "timer_go: %d of %d asleep when memory was sampled\n",
		int64(count)-atomic.LoadInt64(&woken), count)
	wg.Wait()
	cpuAfter := cpuNs()

	var lastDeadline, lastFinish int64
	for i := 0; i < count; i++ {
		if deadline[i] > lastDeadline {
			lastDeadline = deadline[i]
		}
		if finished[i] > lastFinish {
			lastFinish = finished[i]
		}
	}
	n := float64(count)
	fmt.Printf("cpp go timer_overhead_ns %.1f\n", float64(lastFinish-lastDeadline)/n)
	fmt.Printf("cpp go timer_bytes_per_sleeper %.1f\n", (rssSleeping-rssBefore)/n)
	fmt.Printf("cpp go timer_cpu_ns_per_timer %.1f\n", float64(cpuAfter-cpuBefore)/n)
}
