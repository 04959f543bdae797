# bash completion for duplex (installed by `make install` into
# $(PREFIX)/share/bash-completion/completions/duplex).
# The flags come from the command's own help (`duplex connect --help`, ...),
# so the completion never falls behind the binary.

_duplex_flags()
{
    # every --long and -x flag listed in the help of $1 (connect, listen, ...)
    "$2" "$1" --help 2>/dev/null | grep -oE -- '(^|[ ,])--?[A-Za-z0-9][A-Za-z0-9-]*' |
        sed -E 's/^[ ,]//' | sort -u
}

_duplex()
{
    local cur prev cmd i words_n
    cur=${COMP_WORDS[COMP_CWORD]}
    prev=${COMP_WORDS[COMP_CWORD-1]}
    local prog=${COMP_WORDS[0]}
    local commands="connect listen relay sockets bench help"

    # the command word: the first word that is not a flag (or -l)
    cmd=""
    for ((i = 1; i < COMP_CWORD; i++)); do
        case ${COMP_WORDS[i]} in
            connect|listen|relay|sockets|bench|help) cmd=${COMP_WORDS[i]}; break ;;
            -l|--listen) cmd=listen ;;
        esac
    done

    case $prev in
        -U|--unix|--unixsock)
            # ncat's `-U -u PATH`: a flag may follow -U, its PATH comes later
            [[ $cur == -* ]] || { COMPREPLY=($(compgen -f -- "$cur")); return; } ;;
        --pty|--hex-dump|-o|--output|--ssl-cert|--tls-cert|--ssl-key|--tls-key|--ssl-trustfile|--tls-trustfile|--allowfile|--denyfile)
            COMPREPLY=($(compgen -f -- "$cur")); return ;;
        -e|--exec)
            COMPREPLY=($(compgen -c -- "$cur")); return ;;
        --backend)
            COMPREPLY=($(compgen -W "epoll poll io_uring" -- "$cur")); return ;;
        --serial)
            COMPREPLY=($(compgen -W "9600 19200 38400 57600 115200 115200,8N1 9600,7E1" -- "$cur")); return ;;
        --rate-limit)
            COMPREPLY=($(compgen -W "64k 512k 1M 10M 100M 1G" -- "$cur")); return ;;
        --cluster)
            COMPREPLY=($(compgen -W "redis://127.0.0.1:6379/ rediss://localhost:6379/" -- "$cur")); compopt -o nospace 2>/dev/null; return ;;
        --node-name)
            COMPREPLY=($(compgen -W "$(hostname 2>/dev/null)" -- "$cur")); return ;;
        --model)
            COMPREPLY=($(compgen -W "epoll poll io_uring iterative fork thread" -- "$cur")); return ;;
        -X|--proxy-type)
            [ "$cmd" = listen ] && { COMPREPLY=($(compgen -W "socks5 http" -- "$cur")); return; }
            [ "$cmd" != sockets ] && { COMPREPLY=($(compgen -W "socks5 socks4 http connect" -- "$cur")); return; } ;;
        --balance)
            COMPREPLY=($(compgen -W "first roundrobin leastconn" -- "$cur")); return ;;
        --state)
            COMPREPLY=($(compgen -W "established listening syn-sent syn-recv fin-wait-1 fin-wait-2 time-wait close close-wait last-ack closing" -- "$cur")); return ;;
        help)
            COMPREPLY=($(compgen -W "connect listen relay sockets bench" -- "$cur")); return ;;
        bench)
            COMPREPLY=($(compgen -W "echo connrate idle throughput broker" -- "$cur")); return ;;
    esac
    if [[ $cur == --progress=* ]]; then
        COMPREPLY=($(compgen -P --progress= -W "auto always never" -- "${cur#--progress=}")); return
    fi
    if [[ $cur == --send-proxy=* ]]; then
        COMPREPLY=($(compgen -P --send-proxy= -W "v1 v2" -- "${cur#--send-proxy=}")); return
    fi

    if [[ $cur == -* ]]; then
        COMPREPLY=($(compgen -W "$(_duplex_flags "${cmd:-connect}" "$prog")" -- "$cur"))
        [ -z "$cmd" ] && COMPREPLY+=($(compgen -W "-l --listen" -- "$cur"))
        return
    fi
    if [ -z "$cmd" ]; then
        COMPREPLY=($(compgen -W "$commands" -- "$cur"))
        # netcat style: `duplex HOST PORT`
        COMPREPLY+=($(compgen -A hostname -- "$cur"))
        return
    fi
    case $cmd in
        connect|relay) COMPREPLY=($(compgen -A hostname -- "$cur")) ;;
    esac
}
complete -F _duplex duplex
