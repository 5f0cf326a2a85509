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
    crypto = open(sys.argv[2]).read()
    # Measured before and after authd, like the hello-world ceiling: the faster run counts.
    verify_ms = min(float(v) for v in re.findall(r"argon2id_verify_ms median=([\d.]+)", crypto))
    login_ceiling = 1000.0 / verify_ms
    # The hello-world ceiling is measured before and after authd; the higher figure counts.
    hellos = [float(f["rps"]) for (server, _), f in rows.items() if server.startswith("hello")]
    hello = max(hellos, default=float("nan"))

    def rps(server, scenario):
        return float(rows.get((server, scenario), {}).get("rps", "nan"))

    print(f"limits: hello-world {hello:,.0f} req/s (best of {len(hellos)}); argon2id verify {verify_ms} ms "
          f"=> {login_ceiling:.1f} logins/s on one core\n")
    print("| server | scenario | req/s | p99 ms | ratio | of |")
    print("|---|---|---:|---:|---:|---|")
    for (server, scenario), f in sorted(rows.items()):
        if server.startswith("hello"):
            continue
        value = float(f["rps"])
        if scenario in ("me", "mixed_me"):
            ratio, of = value / hello, "hello-world ceiling"
        elif scenario in ("login", "register", "mixed_login"):
            ratio, of = value / login_ceiling, "argon2 ceiling (1 core)"
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
