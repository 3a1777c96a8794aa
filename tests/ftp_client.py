"""FTP client for tests/ftp.rs: Python's ftplib in passive mode, doing what
camera firmware does. Prints one JSON object with the server's replies.

usage: ftp_client.py COMMAND PORT USER PASSWORD [ARGS...]
  login                       log in, report the reply
  camera DIR NAME LOCAL       MKD/CWD chain to DIR, SIZE, ALLO, STOR, SIZE
  put PATH LOCAL              STOR LOCAL as PATH (as given), report the reply
  cwd PATH                    CWD PATH, report the reply and PWD
  rename TMP FINAL LOCAL      STOR LOCAL as TMP, then RNFR TMP / RNTO FINAL
"""
import ftplib
import json
import os
import sys


def reply(fn, *args):
    try:
        return str(fn(*args))
    except ftplib.all_errors as e:
        return str(e)


def store(ftp, path, local):
    with open(local, "rb") as f:
        try:
            return ftp.storbinary(f"STOR {path}", f)
        except (ftplib.error_perm, ftplib.error_temp, ftplib.error_reply) as e:
            return str(e)
        except OSError:
            # The server cut the data connection: its reply says why.
            return reply(ftp.getresp)


def main():
    cmd, port, user, password, *args = sys.argv[1:]
    ftp = ftplib.FTP()
    ftp.connect("127.0.0.1", int(port), timeout=60)
    ftp.set_pasv(True)
    out = {}
    if cmd == "login":
        out["reply"] = reply(ftp.login, user, password)
    else:
        ftp.login(user, password)
        if cmd == "camera":
            remote_dir, name, local = args
            for part in remote_dir.strip("/").split("/"):
                reply(ftp.mkd, part)
                out.setdefault("cwd", []).append(reply(ftp.cwd, part))
            out["pwd"] = ftp.pwd()
            out["size_before"] = reply(ftp.size, name)
            out["allo"] = reply(ftp.sendcmd, f"ALLO {os.path.getsize(local)}")
            out["stor"] = store(ftp, name, local)
            out["size_after"] = reply(ftp.size, name)
        elif cmd == "put":
            path, local = args
            out["stor"] = store(ftp, path, local)
        elif cmd == "rename":
            tmp, final, local = args
            out["stor"] = store(ftp, tmp, local)
            out["rename"] = reply(ftp.rename, tmp, final)
        elif cmd == "cwd":
            out["cwd"] = reply(ftp.cwd, args[0])
            out["pwd"] = ftp.pwd()
        else:
            raise SystemExit(f"unknown command {cmd}")
        reply(ftp.quit)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
