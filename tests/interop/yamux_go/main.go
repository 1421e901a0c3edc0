// yamux_go: the reference hashicorp/yamux (Debian's copy) as an interop peer
// for burrow's C engine (tests/interop/yamux_peer.c speaks the same modes).
//
//	yamux_go server               listen on 127.0.0.1:0, print "PORT <n>", accept
//	                              one connection, echo every stream, half-close
//	                              after the peer's FIN; exit when the peer leaves
//	yamux_go client ADDR N SIZE... open N concurrent streams; stream i sends
//	                              SIZE[i % len] pseudo-random bytes, half-closes,
//	                              and checks the echo (length + SHA-256) and EOF
//
// Built with GO111MODULE=off GOPATH=/usr/share/gocode (no network).
package main

import (
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/yamux"
)

func config() *yamux.Config {
	c := yamux.DefaultConfig()
	c.LogOutput = os.Stderr
	c.ConnectionWriteTimeout = 30 * time.Second
	return c
}

func die(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "yamux_go: "+format+"\n", args...)
	os.Exit(1)
}

func serve() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		die("listen: %v", err)
	}
	fmt.Printf("PORT %d\n", ln.Addr().(*net.TCPAddr).Port)
	os.Stdout.Sync()
	conn, err := ln.Accept()
	if err != nil {
		die("accept: %v", err)
	}
	sess, err := yamux.Server(conn, config())
	if err != nil {
		die("server: %v", err)
	}
	var wg sync.WaitGroup
	n := 0
	for {
		st, err := sess.AcceptStream()
		if err != nil {
			break // the client closed the session
		}
		n++
		wg.Add(1)
		go func(st *yamux.Stream) {
			defer wg.Done()
			// Read returns EOF only after the peer's FIN: everything that
			// arrives before it is echoed, then our FIN follows.
			if _, err := io.Copy(st, st); err != nil {
				fmt.Fprintf(os.Stderr, "yamux_go: echo stream %d: %v\n", st.StreamID(), err)
			}
			st.Close()
		}(st)
	}
	wg.Wait()
	fmt.Printf("SERVED %d\n", n)
}

// readAll reads `want` bytes. This yamux version's Read reports EOF while
// the buffer is momentarily empty once we have sent our FIN (state
// LocalClose), so EOF before `want` bytes is retried until a deadline.
func readAll(st *yamux.Stream, want int64) ([]byte, error) {
	h := sha256.New()
	buf := make([]byte, 64*1024)
	var got int64
	deadline := time.Now().Add(120 * time.Second)
	for got < want {
		n, err := st.Read(buf)
		h.Write(buf[:n])
		got += int64(n)
		if err == io.EOF && n == 0 {
			if time.Now().After(deadline) {
				return nil, fmt.Errorf("EOF after %d of %d bytes", got, want)
			}
			time.Sleep(time.Millisecond)
			continue
		}
		if err != nil && err != io.EOF {
			return nil, fmt.Errorf("read after %d bytes: %v", got, err)
		}
	}
	// Nothing may follow the echo.
	time.Sleep(10 * time.Millisecond)
	if n, _ := st.Read(buf); n != 0 {
		return nil, fmt.Errorf("%d bytes beyond the expected %d", n, want)
	}
	return h.Sum(nil), nil
}

func runStream(sess *yamux.Session, i int, size int64) error {
	st, err := sess.OpenStream()
	if err != nil {
		return fmt.Errorf("open: %v", err)
	}
	src := rand.New(rand.NewSource(int64(i) + 1))
	sent := sha256.New()
	done := make(chan error, 1)
	var echoed []byte
	go func() {
		var err error
		echoed, err = readAll(st, size)
		done <- err
	}()
	buf := make([]byte, 32*1024)
	for left := size; left > 0; {
		n := int64(len(buf))
		if n > left {
			n = left
		}
		src.Read(buf[:n])
		sent.Write(buf[:n])
		if _, err := st.Write(buf[:n]); err != nil {
			return fmt.Errorf("write: %v", err)
		}
		left -= n
	}
	// Half-close: the echo keeps coming after our FIN.
	if err := st.Close(); err != nil {
		return fmt.Errorf("close: %v", err)
	}
	if err := <-done; err != nil {
		return err
	}
	if string(echoed) != string(sent.Sum(nil)) {
		return fmt.Errorf("echo of %d bytes differs", size)
	}
	return nil
}

func client(addr string, n int, sizes []int64) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		die("dial: %v", err)
	}
	sess, err := yamux.Client(conn, config())
	if err != nil {
		die("client: %v", err)
	}
	rtt, err := sess.Ping()
	if err != nil {
		die("ping: %v", err)
	}
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func(i int) {
			err := runStream(sess, i, sizes[i%len(sizes)])
			if err != nil {
				err = fmt.Errorf("stream %d: %v", i, err)
			}
			errs <- err
		}(i)
	}
	failed := 0
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			fmt.Fprintln(os.Stderr, "yamux_go:", err)
			failed++
		}
	}
	sess.Close()
	if failed > 0 {
		die("%d of %d streams failed", failed, n)
	}
	fmt.Printf("OK %d streams, ping %v\n", n, rtt)
}

func main() {
	if len(os.Args) >= 2 && os.Args[1] == "server" {
		serve()
		return
	}
	if len(os.Args) < 5 || os.Args[1] != "client" {
		die("usage: yamux_go server | client ADDR N SIZE...")
	}
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n <= 0 {
		die("bad stream count %q", os.Args[3])
	}
	var sizes []int64
	for _, a := range os.Args[4:] {
		v, err := strconv.ParseInt(a, 10, 64)
		if err != nil || v < 0 {
			die("bad size %q", a)
		}
		sizes = append(sizes, v)
	}
	client(os.Args[2], n, sizes)
}
