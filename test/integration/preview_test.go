package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// previewResult is the part of `preview --output json` the test reads.
type previewResult struct {
	Warnings                          []struct{ Source, Why, What string }
	Samples, Compared, ModelDisagrees int `json:",omitempty"`
	Cut, Opened                       struct {
		Samples int
		Flows   []struct {
			Source, Proto, Today, Candidate string
			Port                            uint16
			Samples                         int
		}
	}
}

// preview runs `xdpguard preview` on candidate while a client keeps
// connecting (to an open port and a closed one), until the preview is done.
func preview(t *testing.T, l *Lab, candidate string) (previewResult, string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "candidate.yaml")
	if err := os.WriteFile(file, []byte(candidate), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			l.ConnectTimeout(l.CliV4, l.SrvV4, 8022, 200*time.Millisecond)
			l.ConnectTimeout(l.CliV6, l.SrvV6, 7777, 200*time.Millisecond)
		}
	}()
	out, err := execCombined("ip", "netns", "exec", l.Server, xdpguardBin, "preview", "--policy", file, "--for", "3s", "--output", "json")
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("preview: %v\n%s", err, out)
	}
	// stderr (the warnings) comes first, then the JSON report.
	i := strings.Index(out, "{")
	var r previewResult
	if i < 0 || json.Unmarshal([]byte(out[i:]), &r) != nil {
		t.Fatalf("preview output:\n%s", out)
	}
	t.Logf("preview of %q:\n%s", candidate, out)
	return r, out
}

// `xdpguard preview` over veth, with an SSH session established and a
// client connecting: a candidate that closes the client's port and port 22
// is reported as cutting that client's flow, and warns first about the SSH
// session's client; a candidate that opens an unused port reports nothing.
// The kernel's verdicts under the policy in force agree with the model's.
func TestPreviewPredictsCutsOfLiveClients(t *testing.T) {
	l := NewLab(t)
	l.Listen(22, 8022, 8080, 7777)
	l.WritePolicy("tcp:\n  allow: [22, 8022, 8080]\n")
	l.StartDaemon()
	ssh := dialFrom(t, l, l.CliV4b, l.SrvV4, 22)

	r, out := preview(t, l, "tcp:\n  allow: [8080]\n")
	if len(r.Warnings) != 1 || r.Warnings[0].Source != l.CliV4b || r.Warnings[0].Why != "ssh-session" ||
		!strings.HasPrefix(out, "WARNING: ") {
		t.Errorf("warnings: %+v, want one first, for the SSH client %s:\n%s", r.Warnings, l.CliV4b, out)
	}
	var cut bool
	for _, f := range r.Cut.Flows {
		if f.Source == l.CliV4 && f.Proto == "tcp" && f.Port == 8022 && f.Today == "syn_allowed" && f.Candidate == "port_not_allowed" {
			cut = f.Samples > 0
		}
		if f.Port != 8022 {
			t.Errorf("cut: a flow the candidate does not change: %+v", f)
		}
	}
	if !cut || r.Opened.Samples != 0 {
		t.Errorf("closing 8022: want %s's tcp/8022 cut and nothing opened:\n%s", l.CliV4, out)
	}
	if r.ModelDisagrees != 0 {
		t.Errorf("the model disagrees with the kernel on %d samples:\n%s", r.ModelDisagrees, out)
	}

	r, out = preview(t, l, "tcp:\n  allow: [22, 8022, 8080, 9500]\n")
	if len(r.Warnings) != 0 || r.Cut.Samples != 0 || r.Opened.Samples != 0 || r.Compared == 0 {
		t.Errorf("a candidate that touches no live traffic: want samples compared and nothing reported:\n%s", out)
	}
	if err := echoes(ssh); err != nil {
		t.Errorf("the SSH session during the previews: %v", err)
	}
}
