"""Prints the benchmark's figures as ratios of their limits (a Markdown table).

usage: ratios.py LINES CRYPTO   (files written by bench/run.sh)
"""
import re
import sys


def parse(path):
    rows = {}
    for line in open(path):
        fields = dict(re.findall(r"(\w+)=(\S+)", line))
        rows[(fields["server"], fields["scenario"])] = fields
    return rows


def main():
    rows = parse(sys.argv[1])
    # argon2id verify medians by where they were taken: "start", "end", or "SERVER/SCENARIO"
    # right before and right after that hashing scenario.
    verify_at = {}
    for line in open(sys.argv[2]):
        found = re.match(r"around=(\S+) argon2id_verify_ms median=([\d.]+)", line)
        if found:
            verify_at.setdefault(found[1], []).append(float(found[2]))
    # The faster measurement counts (a busy neighbour only ever slows argon2 down).
    verify_ms = min(v for vs in verify_at.values() for v in vs)
    login_ceiling = 1000.0 / verify_ms

    def ceiling_for(server, scenario):
        """Logins/s on one core by the argon2 figures taken around this scenario, else the
        run's fastest."""
        around = verify_at.get(f"{server}/{scenario}")
        return (1000.0 / min(around), f"{min(around)} ms, taken around it") if around else (
            login_ceiling, f"{verify_ms} ms, the run's fastest")
    # The hello-world ceiling is measured before and after authd; the higher figure counts.
    hellos = [float(f["rps"]) for (server, _), f in rows.items() if server.startswith("hello")]
    hello = max(hellos, default=float("nan"))

    def hello_for(server, scenario):
        """The hello-world ceiling taken right before and after this scenario (the better of
        the two), else the run's best."""
        around = [float(f["rps"]) for (name, _), f in rows.items()
                  if name in (f"hello-before@{server}/{scenario}", f"hello-after@{server}/{scenario}")]
        return (max(around), "taken around it") if around else (hello, "the run's best")

    def rps(server, scenario):
        return float(rows.get((server, scenario), {}).get("rps", "nan"))

    print(f"limits: hello-world {hello:,.0f} req/s (best of {len(hellos)} runs); argon2id verify "
          f"{verify_ms} ms at its fastest in the run => {login_ceiling:.1f} logins/s on one core")
    for where, values in verify_at.items():
        print(f"- argon2id verify around {where}: {', '.join(f'{v} ms' for v in values)}")
    print()
    print("| server | scenario | req/s | p99 ms | ratio | of |")
    print("|---|---|---:|---:|---:|---|")
    for (server, scenario), f in sorted(rows.items()):
        if server.startswith("hello"):
            continue
        value = float(f["rps"])
        if scenario in ("me", "me-key", "mixed_me"):
            ceiling, taken = hello_for(server, scenario)
            ratio, of = value / ceiling, f"hello-world ceiling ({ceiling:,.0f} req/s, {taken})"
        elif scenario in ("login", "register", "mixed_login"):
            ceiling, taken = ceiling_for(server, scenario)
            ratio, of = value / ceiling, f"argon2 ceiling (1 core; {taken})"
        elif scenario == "refresh":
            ratio, of = value / 6000.0, "6,000/s per core target"
        else:
            ratio, of = float("nan"), ""
        print(f"| {server} | {scenario} | {value:,.1f} | {f.get('p99_ms', '')} | {ratio:.2f} | {of} |")
    me, mixed = rps("authd-sqlite", "me"), rps("authd-sqlite", "mixed_me")
    if me == me and mixed == mixed:
        print(f"\nauthd-sqlite keeps {mixed / me:.0%} of its /users/me throughput under the login flood.")


if __name__ == "__main__":
    main()
