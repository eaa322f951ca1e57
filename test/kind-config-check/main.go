// kind-config-check runs kind's own `create cluster` code path on a cluster config file
// without a container engine, and reports what kind would create.
//
//	kind-config-check <kind-config.yaml>
//
// kind (sigs.k8s.io/kind, the library behind `kind create cluster`) is pointed at a node
// provider whose "container runtime" binary is this program itself (kind's nerdctl provider
// takes the binary's path). kind then loads the file (strict YAML: unknown fields are errors),
// applies its defaults, validates it (e.g. "must have at least one control-plane node"),
// plans and "runs" one container per node, and writes each node's kubeadm configuration into
// it — every step kind's real code, every container command answered by the stand-in below,
// which only records what it is asked. Nothing is pulled, no container is started, no
// kubeconfig outside a temporary directory is touched; the run stops before kubeadm.
//
// Output (stdout, one JSON object): {"accepted": true, "nodes": [{"name", "role", "image",
// "runArgs", "kubeadmConfig"}]} with exit status 0, or {"accepted": false, "error": "…"}
// with exit status 1. Exit status 2: the check itself could not run.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/log"
)

const stateEnv = "WAGGLE_KIND_CHECK_STATE"

// The label kind puts on each node container with its role (kind's nodeRoleLabelKey).
const roleLabel = "io.x-k8s.kind.role"

type node struct {
	Name          string   `json:"name"`
	Role          string   `json:"role"`
	Image         string   `json:"image"`
	RunArgs       []string `json:"runArgs"`
	KubeadmConfig string   `json:"kubeadmConfig"`
}

type report struct {
	Accepted bool   `json:"accepted"`
	Error    string `json:"error,omitempty"`
	Nodes    []node `json:"nodes,omitempty"`
}

func main() {
	if dir := os.Getenv(stateEnv); dir != "" {
		os.Exit(fakeRuntime(dir, os.Args[1:]))
	}
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: kind-config-check <kind-config.yaml>")
		os.Exit(2)
	}
	os.Exit(check(os.Args[1]))
}

func check(configPath string) int {
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kind-config-check:", err)
		return 2
	}
	state, err := os.MkdirTemp("", "waggle-kind-check-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kind-config-check:", err)
		return 2
	}
	defer os.RemoveAll(state)
	if err := os.Setenv(stateEnv, state); err != nil {
		fmt.Fprintln(os.Stderr, "kind-config-check:", err)
		return 2
	}

	provider := cluster.NewProvider(
		cluster.ProviderWithLogger(log.NoopLogger{}),
		cluster.ProviderWithNerdctl(self),
	)
	createErr := provider.Create("waggle-config-check",
		cluster.CreateWithConfigFile(configPath),
		// Stop after the node containers and their kubeadm configuration: no kubeadm run,
		// no kubeconfig export.
		cluster.CreateWithStopBeforeSettingUpKubernetes(true),
		// On a failure kind would delete the "containers" and edit the kubeconfig: keep both
		// out of it (there is nothing to delete, and the kubeconfig path is temporary).
		cluster.CreateWithRetain(true),
		cluster.CreateWithKubeconfigPath(filepath.Join(state, "kubeconfig")),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	)

	out := report{Accepted: createErr == nil}
	if createErr != nil {
		out.Error = createErr.Error()
	} else {
		nodes, err := readNodes(state)
		if err != nil {
			fmt.Fprintln(os.Stderr, "kind-config-check:", err)
			return 2
		}
		out.Nodes = nodes
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		return 2
	}
	if !out.Accepted {
		return 1
	}
	return 0
}

func readNodes(state string) ([]node, error) {
	names, err := containerNames(state)
	if err != nil {
		return nil, err
	}
	nodes := []node{}
	for _, name := range names {
		var n node
		raw, err := os.ReadFile(filepath.Join(state, "containers", name, "run.json"))
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(raw, &n); err != nil {
			return nil, err
		}
		if cfg, err := os.ReadFile(filepath.Join(state, "containers", name, "files", "kind", "kubeadm.conf")); err == nil {
			n.KubeadmConfig = string(cfg)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

func containerNames(state string) ([]string, error) {
	entries, err := os.ReadDir(filepath.Join(state, "containers"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names, nil
}

// fakeRuntime answers the container commands kind's nerdctl provider issues, from a state
// directory: containers "run" are recorded, files "copied" into them are kept. Any command it
// does not know fails loudly, so a kind that asks for more shows up as a failed check.
func fakeRuntime(state string, args []string) int {
	fail := func(format string, a ...any) int {
		fmt.Fprintf(os.Stderr, "kind-config-check stand-in runtime: "+format+"\n", a...)
		return 1
	}
	if len(args) == 0 {
		return fail("no command")
	}
	switch {
	case args[0] == "info":
		// cgroup v2, not rootless: kind's provider checks pass.
		fmt.Println(`{"CgroupDriver":"systemd","CgroupVersion":"2","MemoryLimit":true,"PidsLimit":true,"CPUShares":true,"SecurityOptions":["name=seccomp,profile=default"]}`)
		return 0
	case args[0] == "ps":
		names, err := containerNames(state)
		if err != nil {
			return fail("%v", err)
		}
		for _, n := range names {
			fmt.Println(n)
		}
		return 0
	case args[0] == "inspect" && len(args) > 1 && args[1] == "--type=image":
		return 0 // every node image is "present": nothing is pulled
	case args[0] == "network" && len(args) > 2 && args[1] == "inspect":
		if args[2] == "-f" {
			fmt.Println("fc00:f853:ccd:e793::/64 172.18.0.0/16")
		} else if args[2] == "kind" {
			fmt.Println("kind")
		} else {
			return fail("no network %q", args[2])
		}
		return 0
	case args[0] == "run":
		return fakeRun(state, args[1:], fail)
	case args[0] == "logs":
		fmt.Println("[  OK  ] Reached target Multi-User System.")
		return 0
	case args[0] == "inspect":
		return fakeInspect(state, args[1:], fail)
	case args[0] == "exec":
		return fakeExec(state, args[1:], fail)
	}
	return fail("unsupported command: %s", strings.Join(args, " "))
}

func fakeRun(state string, args []string, fail func(string, ...any) int) int {
	if len(args) < 2 || args[0] != "--name" {
		return fail("run without --name: %s", strings.Join(args, " "))
	}
	n := node{Name: args[1], RunArgs: args[2:]}
	for i := 2; i < len(args)-1; i++ {
		if args[i] == "--label" && strings.HasPrefix(args[i+1], roleLabel+"=") {
			n.Role = strings.TrimPrefix(args[i+1], roleLabel+"=")
		}
	}
	// The image is the first argument that is not a flag or a flag's value; kind puts it
	// last for nodes (the load balancer's command follows its image).
	n.Image = imageOf(args[2:])
	dir := filepath.Join(state, "containers", n.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail("%v", err)
	}
	raw, _ := json.Marshal(n)
	if err := os.WriteFile(filepath.Join(dir, "run.json"), raw, 0o644); err != nil {
		return fail("%v", err)
	}
	return 0
}

// Flags of `run` that kind passes with a separate value.
var valueFlags = map[string]bool{
	"--hostname": true, "--label": true, "--net": true, "--security-opt": true, "--tmpfs": true,
	"--volume": true, "-e": true, "--device": true, "--name": true,
}

func imageOf(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if valueFlags[a] {
			i++
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

func fakeInspect(state string, args []string, fail func(string, ...any) int) int {
	if len(args) != 3 {
		return fail("unsupported inspect: %s", strings.Join(args, " "))
	}
	format, name := args[1], args[2]
	raw, err := os.ReadFile(filepath.Join(state, "containers", name, "run.json"))
	if err != nil {
		return fail("no container %q", name)
	}
	var n node
	if err := json.Unmarshal(raw, &n); err != nil {
		return fail("%v", err)
	}
	switch {
	case strings.Contains(format, roleLabel):
		fmt.Println(n.Role)
	case strings.Contains(format, ".NetworkSettings.Networks"):
		names, _ := containerNames(state)
		ip := 2 + sort.SearchStrings(names, name)
		fmt.Printf("172.18.0.%d,fc00:f853:ccd:e793::%d\n", ip, ip)
	default:
		return fail("unsupported inspect format %q", format)
	}
	return 0
}

func fakeExec(state string, args []string, fail func(string, ...any) int) int {
	// exec --privileged [-i] [-e K=V]… <container> <command> <args…>
	i := 0
	for i < len(args) && strings.HasPrefix(args[i], "-") {
		if args[i] == "-e" {
			i++
		}
		i++
	}
	if len(args)-i < 2 {
		return fail("unsupported exec: %s", strings.Join(args, " "))
	}
	name, cmd := args[i], args[i+1:]
	root := filepath.Join(state, "containers", name)
	if _, err := os.Stat(root); err != nil {
		return fail("no container %q", name)
	}
	inNode := func(p string) string { return filepath.Join(root, "files", filepath.Clean("/"+p)) }
	switch {
	case len(cmd) == 2 && cmd[0] == "cat" && cmd[1] == "/kind/version":
		// A node image's Kubernetes version, as kindest/node images carry it: the image's tag.
		raw, err := os.ReadFile(filepath.Join(root, "run.json"))
		if err != nil {
			return fail("%v", err)
		}
		var n node
		if err := json.Unmarshal(raw, &n); err != nil {
			return fail("%v", err)
		}
		ref, _, _ := strings.Cut(n.Image, "@")
		version := ref[strings.LastIndex(ref, ":")+1:]
		if !strings.HasPrefix(version, "v") {
			return fail("node image %q has no version tag", n.Image)
		}
		fmt.Println(version)
		return 0
	case len(cmd) == 3 && cmd[0] == "mkdir" && cmd[1] == "-p":
		if err := os.MkdirAll(inNode(cmd[2]), 0o755); err != nil {
			return fail("%v", err)
		}
		return 0
	case len(cmd) == 3 && cmd[0] == "cp" && cmd[1] == "/dev/stdin":
		content, err := io.ReadAll(os.Stdin)
		if err != nil {
			return fail("%v", err)
		}
		if err := os.WriteFile(inNode(cmd[2]), content, 0o644); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	return fail("unsupported exec in %s: %s", name, strings.Join(cmd, " "))
}
