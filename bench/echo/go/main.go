// The Go peer of the echo benchmark (bench/echo/run.sh): package net, one goroutine per
// connection, each with its own 4 KiB buffer (as the Asio server's coroutines have).
//
//	GOMAXPROCS=1 echo_go --port P    (P = 0: any free port; `port <n>` is printed either way)
//
// Runs until killed. GOMAXPROCS is 1 unless the environment sets it: the system this is
// compared with runs its tasklets on one thread.
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"runtime"
)

func serve(conn net.Conn) {
	defer conn.Close()
	buf := make([]byte, 4096)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return // end of stream or a reset
		}
		if _, err := conn.Write(buf[:n]); err != nil {
			return
		}
	}
}

func main() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
	port := flag.Int("port", -1, "port to listen on, 0: any free port")
	flag.Parse()
	if *port < 0 || *port > 65535 {
		fmt.Fprintln(os.Stderr, "usage: echo_go --port P   (0: any free port)")
		os.Exit(2)
	}
	// Go raises the soft limit of open files to the hard limit by itself (since Go 1.19), and
	// sets TCP_NODELAY on every TCP connection.
	ln, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, "echo_go:", err)
		os.Exit(1)
	}
	fmt.Printf("port %d\n", ln.Addr().(*net.TCPAddr).Port)
	for {
		conn, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "echo_go: accept:", err)
			os.Exit(1)
		}
		go serve(conn)
	}
}
