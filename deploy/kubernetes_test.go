package deploy

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/xdpguard/xdpguard/pkg/policy"
)

// kustomization is the part of a kustomization.yaml the base uses; decoded
// strictly, so a typo in a field fails the test.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs map[string]string `json:"pairs"`
	} `json:"labels"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name     string   `json:"name"`
		Files    []string `json:"files"`
		Literals []string `json:"literals"`
		Options  struct {
			DisableNameSuffixHash bool `json:"disableNameSuffixHash"`
		} `json:"options"`
	} `json:"configMapGenerator"`
	Images []struct {
		Name   string `json:"name"`
		NewTag string `json:"newTag"`
	} `json:"images"`
}

// decodeStrict reads YAML into out: duplicate keys and fields the type does
// not have are errors.
func decodeStrict(path string, out any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	js, err := yaml.YAMLToJSONStrict(raw)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// cluster is the base as the API server would receive it.
type cluster struct {
	k          kustomization
	namespace  *corev1.Namespace
	daemonSet  *appsv1.DaemonSet
	podMonitor *monitoringv1.PodMonitor
	configMaps map[string]*corev1.ConfigMap // what configMapGenerator makes
}

func loadBase(t *testing.T) *cluster {
	t.Helper()
	const dir = "kubernetes"
	c := &cluster{configMaps: map[string]*corev1.ConfigMap{}}
	if err := decodeStrict(filepath.Join(dir, "kustomization.yaml"), &c.k); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{"kustomization.yaml": true}
	for _, r := range c.k.Resources {
		listed[r] = true
		var meta struct{ APIVersion, Kind string }
		raw, err := os.ReadFile(filepath.Join(dir, r))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		var obj any
		switch meta.APIVersion + " " + meta.Kind {
		case "v1 Namespace":
			c.namespace = &corev1.Namespace{}
			obj = c.namespace
		case "apps/v1 DaemonSet":
			c.daemonSet = &appsv1.DaemonSet{}
			obj = c.daemonSet
		case "monitoring.coreos.com/v1 PodMonitor":
			c.podMonitor = &monitoringv1.PodMonitor{}
			obj = c.podMonitor
		default:
			t.Fatalf("%s: unexpected %s %s", r, meta.APIVersion, meta.Kind)
		}
		if err := decodeStrict(filepath.Join(dir, r), obj); err != nil {
			t.Fatal(err)
		}
	}
	for _, g := range c.k.ConfigMapGenerator {
		cm := &corev1.ConfigMap{Data: map[string]string{}}
		cm.Name = g.Name
		for _, f := range g.Files {
			listed[f] = true
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			cm.Data[f] = string(b)
		}
		for _, l := range g.Literals {
			k, v, _ := strings.Cut(l, "=")
			cm.Data[k] = v
		}
		if !g.Options.DisableNameSuffixHash {
			t.Errorf("ConfigMap %s gets a hash suffix: a change would restart every pod instead of reloading", g.Name)
		}
		c.configMaps[g.Name] = cm
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		if !listed[f.Name()] {
			t.Errorf("%s/%s is not part of the kustomization", dir, f.Name())
		}
	}
	if c.namespace == nil || c.daemonSet == nil || c.podMonitor == nil {
		t.Fatalf("the base lacks a namespace, DaemonSet or PodMonitor: %v", c.k.Resources)
	}
	return c
}

// Every manifest decodes strictly into the Kubernetes API types, and the
// DaemonSet is what the issue asks: host network, only the capabilities
// needed and not privileged, the host's bpffs (pins outlive the pod), the
// policy from a ConfigMap, readiness meaning attached, node selection by
// label, a rolling update that keeps every node filtered, and a PodMonitor
// that finds the metrics.
func TestKubernetesManifests(t *testing.T) {
	c := loadBase(t)
	ds := c.daemonSet
	pod := ds.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	if !pod.HostNetwork {
		t.Error("not on the host network: XDP would attach to the pod's veth, not the node's interfaces")
	}
	sc := ctr.SecurityContext
	if sc == nil || sc.Capabilities == nil {
		t.Fatal("no securityContext capabilities")
	}
	if sc.Privileged != nil && *sc.Privileged {
		t.Error("privileged: true")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	var add []string
	for _, c := range sc.Capabilities.Add {
		add = append(add, string(c))
	}
	slices.Sort(add)
	if !slices.Equal(add, []string{"BPF", "NET_ADMIN", "PERFMON"}) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities: add %v drop %v; want add BPF NET_ADMIN PERFMON, drop ALL", add, sc.Capabilities.Drop)
	}

	mounts := map[string]corev1.VolumeMount{}
	for _, m := range ctr.VolumeMounts {
		mounts[m.Name] = m
	}
	var bpffs, policyVol *corev1.Volume
	for i, v := range pod.Volumes {
		switch {
		case v.HostPath != nil && v.HostPath.Path == "/sys/fs/bpf":
			bpffs = &pod.Volumes[i]
		case v.ConfigMap != nil:
			policyVol = &pod.Volumes[i]
		}
	}
	if bpffs == nil || mounts[bpffs.Name].MountPath != "/sys/fs/bpf" {
		t.Error("the host's /sys/fs/bpf is not mounted at /sys/fs/bpf: the filter would die with the pod")
	}
	args := strings.Join(ctr.Args, " ")
	if policyVol == nil || c.configMaps[policyVol.ConfigMap.Name] == nil {
		t.Fatal("the policy volume is not the generated ConfigMap")
	}
	policyDir := mounts[policyVol.Name].MountPath
	var policyFile string
	for _, a := range ctr.Args {
		if p, ok := strings.CutPrefix(a, "--policy="); ok {
			policyFile = p
		}
	}
	if filepath.Dir(policyFile) != policyDir {
		t.Errorf("--policy=%s is not in the ConfigMap mount %s", policyFile, policyDir)
	}
	// The ConfigMap's key must be a policy xdpguard accepts.
	text, ok := c.configMaps[policyVol.ConfigMap.Name].Data[filepath.Base(policyFile)]
	if !ok {
		t.Fatalf("ConfigMap %s has no key %s", policyVol.ConfigMap.Name, filepath.Base(policyFile))
	}
	if _, err := policy.Parse("policy.yaml", []byte(text)); err != nil {
		t.Errorf("the ConfigMap's policy: %v", err)
	}
	// The interface list comes from the generated config.
	for _, e := range ctr.Env {
		if e.Name == "XDPGUARD_IFACES" {
			ref := e.ValueFrom.ConfigMapKeyRef
			if ref == nil || c.configMaps[ref.Name] == nil || c.configMaps[ref.Name].Data[ref.Key] == "" {
				t.Errorf("XDPGUARD_IFACES refers to nothing generated: %+v", e.ValueFrom)
			}
		}
	}
	if !strings.Contains(args, "--iface=$(XDPGUARD_IFACES)") {
		t.Errorf("args do not take the interfaces from XDPGUARD_IFACES: %s", args)
	}

	rp := ctr.ReadinessProbe
	if rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" {
		t.Error("no readiness probe on /readyz (attached and policy loaded)")
	} else if port := rp.HTTPGet.Port.String(); port != "metrics" {
		t.Errorf("readiness probe on port %s", port)
	}
	if len(pod.NodeSelector) == 0 {
		t.Error("no nodeSelector: every node would run it")
	}
	ru := ds.Spec.UpdateStrategy.RollingUpdate
	if ds.Spec.UpdateStrategy.Type != appsv1.RollingUpdateDaemonSetStrategyType || ru == nil {
		t.Fatal("not a rolling update")
	}
	if ru.MaxSurge == nil || ru.MaxSurge.IntValue() != 0 || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 1 {
		t.Errorf("rolling update maxSurge %v maxUnavailable %v; want 0 and 1 (one node at a time, never two daemons on a node)", ru.MaxSurge, ru.MaxUnavailable)
	}

	// The PodMonitor selects these pods, on a port the container has.
	sel := c.podMonitor.Spec.Selector.MatchLabels
	for k, v := range sel {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("PodMonitor selects %s=%s; the pods have %v", k, v, ds.Spec.Template.Labels)
		}
	}
	if len(sel) == 0 || len(c.podMonitor.Spec.PodMetricsEndpoints) == 0 {
		t.Fatal("PodMonitor selects nothing")
	}
	port := c.podMonitor.Spec.PodMetricsEndpoints[0].Port
	if port == nil || !slices.ContainsFunc(ctr.Ports, func(p corev1.ContainerPort) bool { return p.Name == *port }) {
		t.Errorf("PodMonitor scrapes port %v; the container has %v", port, ctr.Ports)
	}
	// The alerts select job="xdpguard".
	if jl := c.podMonitor.Spec.JobLabel; ds.Spec.Template.Labels[jl] != "xdpguard" {
		t.Errorf("PodMonitor jobLabel %q gives the job %q; the alerts expect xdpguard", jl, ds.Spec.Template.Labels[jl])
	}
	if c.namespace.Name != c.k.Namespace {
		t.Errorf("namespace %s, kustomization namespace %s", c.namespace.Name, c.k.Namespace)
	}

	// Every flag the DaemonSet passes exists in `xdpguard run`.
	bin := filepath.Join(t.TempDir(), "xdpguard")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	help, err := exec.Command(bin, "run", "--help").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if ctr.Args[0] != "run" {
		t.Errorf("args start with %q, not run", ctr.Args[0])
	}
	for _, a := range ctr.Args[1:] {
		flag, _, _ := strings.Cut(a, "=")
		if !strings.Contains(string(help), " "+flag+" ") {
			t.Errorf("xdpguard run has no flag %s", flag)
		}
	}
}

// The image definition: multi-stage, a static binary (built here the way
// the Dockerfile builds it, and checked to have no ELF interpreter), a
// distroless or scratch final stage that runs xdpguard.
func TestContainerImage(t *testing.T) {
	b, err := os.ReadFile("container/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var build, entry string
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		switch strings.ToUpper(fields[0]) {
		case "FROM":
			froms = append(froms, fields[1])
		case "ENTRYPOINT":
			entry = line
		}
		if strings.Contains(line, "go build") {
			build = line
		}
	}
	if len(froms) < 2 {
		t.Fatalf("not multi-stage: %v", froms)
	}
	final := froms[len(froms)-1]
	if final != "scratch" && !strings.HasPrefix(final, "gcr.io/distroless/static") {
		t.Errorf("final stage %s is neither scratch nor distroless static", final)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/xdpguard") {
		t.Errorf("the build is not a static build of cmd/xdpguard: %s", build)
	}
	if !strings.Contains(entry, "/usr/bin/xdpguard") {
		t.Errorf("entrypoint %q", entry)
	}
	bin := filepath.Join(t.TempDir(), "xdpguard")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xdpguard/xdpguard/cmd/xdpguard")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("the binary has an ELF interpreter: it is not static and would not run on distroless/static")
		}
	}
}
