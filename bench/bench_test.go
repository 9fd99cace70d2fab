package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestQuickRun runs the benchmark in quick mode against real servers, as
// `go run ./bench -quick` does, and checks that the report has every
// section and a positive median for every line: the benchmark keeps
// working as the server changes. Its figures are not measurements.
func TestQuickRun(t *testing.T) {
	out := filepath.Join(t.TempDir(), "report.md")
	// A Go runtime variable and a server flag: the report must say the
	// servers ran with them.
	cmd := exec.Command("go", "run", "./bench", "-quick", "-out", out, "-legion-args", "--cache-size 64mb")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "GOGC=150")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go run ./bench -quick: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	report := string(b)
	for _, section := range []string{"## PING", "## Counter (legion --fsync always", "## Counter (fsync off", "## Counter against PING",
		"## Large state (~1 MiB partition, 1 client", "## Large state (~1 MiB partition, 8 client", "## Search", "## Footprint",
		"## " + oneThreadSection, "## " + pinnedSection, "## Commands"} {
		if !strings.Contains(report, section) {
			t.Errorf("the report has no section %q", section)
		}
	}
	for _, want := range []string{"- legion-server run with: its defaults (the admin port and its metrics on), ", "`GOGC=150`", "`--cache-size 64mb`",
		"| LEGION.APPLY (--fsync no) / PING, 50 clients, pipeline 1 |", "| LEGION.APPLY (--fsync always) / PING, 50 clients, pipeline 16 |",
		"- With fsync always, legion-server synced its log through "} {
		if !strings.Contains(report, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// With fsync always every unpipelined write waits for a sync, shared
	// at most by the 50 clients' writes.
	syncs := regexp.MustCompile(`it synced once per ([0-9.]+) requests at pipeline 1, a sync taking ([0-9.]+) ms on average; and once per ([0-9.]+) requests at pipeline 16`).FindStringSubmatch(report)
	if syncs == nil {
		t.Errorf("the report does not say how often legion-server synced its log")
	} else if per, _ := strconv.ParseFloat(syncs[1], 64); per < 1 || per > 50 {
		t.Errorf("one sync per %v unpipelined requests of 50 clients", per)
	}
	row := regexp.MustCompile(`^\| (.+) \| (\S+) \| ([0-9.]+|—) \| ([0-9.]+|—) \| (\S+) \|`)
	rows := 0
	for _, l := range strings.Split(report, "\n") {
		m := row.FindStringSubmatch(l)
		if m == nil || m[1] == "work" {
			continue
		}
		rows++
		for _, v := range m[3:5] {
			if f, err := strconv.ParseFloat(v, 64); err != nil || f <= 0 {
				t.Errorf("line %q: median %q is not a positive number", m[1], v)
			}
		}
	}
	if rows < 60 {
		t.Errorf("the report has %d lines of figures, want at least 60:\n%s", rows, report)
	}
}
