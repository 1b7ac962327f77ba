#!/bin/sh
# Entrypoint of pinnace-example/mysql: MariaDB (Debian's mariadb-server) that
# behaves like the official mysql image in what the classic example uses.
#
# On an empty datadir it initialises one (mariadb-install-db), starts a
# temporary server reachable only through its socket, sets root's password
# from MYSQL_ROOT_PASSWORD for 'root'@'localhost' and 'root'@'%' (or
# MYSQL_ROOT_HOST), creates MYSQL_DATABASE and MYSQL_USER/MYSQL_PASSWORD if
# given, runs /docker-entrypoint-initdb.d/*.sh, *.sql and *.sql.gz, and stops
# the temporary server. Then it execs mariadbd as the container's main
# process: listening on 0.0.0.0:3306, logging to stderr, shutting down cleanly
# on SIGTERM. Started as root, it gives the datadir to the mysql user and
# mariadbd drops to that user itself (--user=mysql); no systemd, no
# mysqld_safe.
#
# Arguments: none or options (`--port=3307`) run the server with those
# options (also during initialisation); any other command is run as is
# (`sh`, `mariadb -h ...`).
#
# MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD, MYSQL_RANDOM_ROOT_PASSWORD:
# one of them is needed to initialise a datadir. The MARIADB_* spellings of
# the official mariadb image are accepted too.
set -eu

note() { printf '%s [Note] [Entrypoint]: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2; }
warn() { printf '%s [Warn] [Entrypoint]: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2; }
die() { printf '%s [ERROR] [Entrypoint]: %s\n' "$(date '+%Y-%m-%d %H:%M:%S')" "$*" >&2; exit 1; }

# MYSQL_X, else MARIADB_X, else the default.
env_or() {
	eval "v=\${MYSQL_$1-}"
	[ -n "$v" ] || eval "v=\${MARIADB_$1-}"
	[ -n "$v" ] || v=${2-}
	printf '%s' "$v"
}

# One line of output, backslashes kept (dash's echo would interpret them).
line() { printf '%s\n' "$*"; }

# A value inside '...' in SQL: backslash and quote escaped.
sql_str() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }

# Options first (`--port=3307`): they are for the server.
if [ "$#" -eq 0 ] || [ "${1#-}" != "$1" ]; then
	set -- mariadbd "$@"
fi
case "$1" in
	mariadbd|mysqld) ;;
	*) exec "$@" ;;
esac
shift  # "$@" is now the server's options

# What the server will use, with the config files and these options applied.
server_option() {
	mariadbd "$@" --verbose --help 2>/dev/null | awk -v k="$OPT" '$1 == k { print $2; exit }'
}
DATADIR=$(OPT=datadir server_option "$@")
SOCKET=$(OPT=socket server_option "$@")
DATADIR=${DATADIR:-/var/lib/mysql/}
SOCKET=${SOCKET:-/run/mysqld/mysqld.sock}

user_opt=
if [ "$(id -u)" = 0 ]; then
	# Debian's mysql user owns the data; mariadbd switches to it after startup.
	mkdir -p "$DATADIR" "$(dirname "$SOCKET")"
	chown mysql:mysql "$(dirname "$SOCKET")"
	if [ "$(stat -c %U "$DATADIR")" != mysql ] || [ -n "$(find "$DATADIR" ! -user mysql -print -quit)" ]; then
		chown -R mysql:mysql "$DATADIR" || warn "cannot give $DATADIR to the mysql user"
	fi
	user_opt=--user=mysql
fi

tmp_pid=
stop_temporary() {
	if [ -n "$tmp_pid" ]; then
		kill -TERM "$tmp_pid" 2>/dev/null || true
		wait "$tmp_pid" || true
		tmp_pid=
	fi
}
trap 'warn "signal during initialisation: stopping"; stop_temporary; exit 143' TERM INT HUP

# mariadb client as root through the temporary server's socket; root has no
# password until the last step of the setup.
sql() { mariadb --no-defaults --protocol=socket --socket="$SOCKET" -uroot "$@"; }

# Present while an initialisation runs: one cut short (a signal, a failure) is
# started again from scratch, not taken for a datadir without passwords.
MARKER="$DATADIR/.init-incomplete"
if [ -f "$MARKER" ]; then
	warn "an earlier initialisation of $DATADIR did not finish: starting it again"
	find "$DATADIR" -mindepth 1 -maxdepth 1 ! -name lost+found -exec rm -rf {} +
fi

if [ ! -d "$DATADIR/mysql" ]; then
	root_password=$(env_or ROOT_PASSWORD)
	allow_empty=$(env_or ALLOW_EMPTY_PASSWORD)
	random=$(env_or RANDOM_ROOT_PASSWORD)
	if [ -z "$root_password" ] && [ -z "$allow_empty" ] && [ -z "$random" ]; then
		die "Database is uninitialized and password option is not specified.
    You need to specify one of MYSQL_ROOT_PASSWORD, MYSQL_ALLOW_EMPTY_PASSWORD and MYSQL_RANDOM_ROOT_PASSWORD"
	fi
	if [ -n "$random" ] && [ -z "$root_password" ]; then
		root_password=$(tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32)
		note "GENERATED ROOT PASSWORD: $root_password"
	fi
	root_host=$(env_or ROOT_HOST %)

	note "Initializing database files in $DATADIR"
	: >"$MARKER"
	# shellcheck disable=SC2086
	# --cross-bootstrap: no root@<hostname> entries and no check that the host name resolves
	# (the pod's name need not); the accounts are set up below.
	if ! out=$(mariadb-install-db "$@" $user_opt --datadir="$DATADIR" --cross-bootstrap \
		--auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
		--default-time-zone=SYSTEM --skip-log-bin --loose-innodb_buffer_pool_load_at_startup=0 \
		--loose-innodb_buffer_pool_dump_at_shutdown=0 2>&1); then
		printf '%s\n' "$out" >&2
		die "mariadb-install-db failed"
	fi
	note "Database files initialized"

	note "Starting temporary server"
	# shellcheck disable=SC2086
	mariadbd "$@" $user_opt --skip-networking --socket="$SOCKET" --default-time-zone=SYSTEM \
		--skip-log-bin --skip-slave-start --loose-innodb_buffer_pool_load_at_startup=0 \
		--loose-innodb_buffer_pool_dump_at_shutdown=0 &
	tmp_pid=$!
	i=0
	until sql -e 'SELECT 1' >/dev/null 2>&1; do
		kill -0 "$tmp_pid" 2>/dev/null || { wait "$tmp_pid" || true; tmp_pid=; die "the temporary server failed to start"; }
		i=$((i + 1))
		[ "$i" -lt 60 ] || { stop_temporary; die "the temporary server did not answer in 30 s"; }
		sleep 0.5
	done
	note "Temporary server started"

	database=$(env_or DATABASE)
	user=$(env_or USER)
	password=$(env_or PASSWORD)
	{
		line "SET @@SESSION.SQL_LOG_BIN=0;"
		# No anonymous accounts and no root entries by host name or address: 'root'@'localhost'
		# (the socket) and 'root'@'$root_host' (TCP) are the ways in.
		line "DROP USER IF EXISTS ''@'localhost', 'root'@'127.0.0.1', 'root'@'::1';"
		line "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS \\'\\'@\\'', @@hostname, '\\'');"
		line "EXECUTE IMMEDIATE CONCAT('DROP USER IF EXISTS root@\\'', @@hostname, '\\'');"
		if [ -n "$database" ]; then
			line "CREATE DATABASE IF NOT EXISTS \`$database\`;"
		fi
		if [ -n "$user" ] && [ "$user" != root ]; then
			line "CREATE USER '$(sql_str "$user")'@'%' IDENTIFIED BY '$(sql_str "$password")';"
			if [ -n "$database" ]; then
				line "GRANT ALL ON \`$database\`.* TO '$(sql_str "$user")'@'%';"
			fi
		elif [ -n "$user" ]; then
			warn "MYSQL_USER=root: root is set up by MYSQL_ROOT_PASSWORD; not creating it again"
		fi
	} | sql

	for f in /docker-entrypoint-initdb.d/*; do
		[ -e "$f" ] || continue
		case "$f" in
			*.sh)
				if [ -x "$f" ]; then
					note "$0: running $f"
					"$f"
				else
					note "$0: sourcing $f"
					# shellcheck source=/dev/null
					. "$f"
				fi ;;
			*.sql) note "$0: running $f"; sql ${database:+"$database"} <"$f" ;;
			*.sql.gz) note "$0: running $f"; gzip -dc "$f" | sql ${database:+"$database"} ;;
			*) note "$0: ignoring $f" ;;
		esac
	done

	# Last, so that everything above could log in without a password.
	pw=$(sql_str "$root_password")
	{
		line "SET @@SESSION.SQL_LOG_BIN=0;"
		line "ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';"
		if [ "$root_host" != localhost ]; then
			line "CREATE USER IF NOT EXISTS 'root'@'$(sql_str "$root_host")' IDENTIFIED BY '$pw';"
			line "GRANT ALL ON *.* TO 'root'@'$(sql_str "$root_host")' WITH GRANT OPTION;"
			line "GRANT PROXY ON ''@'%' TO 'root'@'$(sql_str "$root_host")' WITH GRANT OPTION;"
		fi
	} | sql

	note "Stopping temporary server"
	stop_temporary
	note "Temporary server stopped"
	rm -f "$MARKER"
	note "MariaDB init process done. Ready for start up."
fi
trap - TERM INT HUP

note "Starting mariadbd: $*"
# shellcheck disable=SC2086
exec mariadbd "$@" $user_opt
