-- wrk script: POST the JSON body in the file named by $BODY to the URL given on the command line.
wrk.method = "POST"
local file = io.open(os.getenv("BODY"), "rb")
wrk.body = file:read("*a")
file:close()
wrk.headers["Content-Type"] = "application/json"
