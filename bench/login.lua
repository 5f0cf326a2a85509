-- One user's password login over and over (bench/ab.sh SCENARIO=login): the argon2 path.
dofile(os.getenv("BENCH_LUA_DIR") .. "/common.lua")
wrk.method = "POST"
wrk.path = "/token"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.body = "username=loadtest&password=Bench-pass-12345"
