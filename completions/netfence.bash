# bash completion for netfence. Generated from the command tree by
# 'netfence completions bash'; do not edit.
_netfence() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local path="netfence" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -o|--output|--bpffs-root|--stats-window|--passes) ((i++)); continue ;;
        esac
        case "$path ${COMP_WORDS[i]}" in
            "netfence ebpf") path="netfence ebpf" ;;
            "netfence ebpf progs"|"netfence ebpf p") path="netfence ebpf progs" ;;
            "netfence ebpf maps"|"netfence ebpf m") path="netfence ebpf maps" ;;
            "netfence loader") path="netfence loader" ;;
            "netfence loader init") path="netfence loader init" ;;
            "netfence loader status") path="netfence loader status" ;;
            "netfence bench") path="netfence bench" ;;
            "netfence bench datapath") path="netfence bench datapath" ;;
            "netfence demo") path="netfence demo" ;;
            "netfence completions") path="netfence completions" ;;
            "netfence man") path="netfence man" ;;
        esac
    done
    case "$prev" in
        -o|--output) COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
        --bpffs-root) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --stats-window) COMPREPLY=(); return ;;
        --passes) COMPREPLY=(); return ;;
    esac
    case "$path" in
        "netfence") COMPREPLY=($(compgen -W "ebpf loader bench demo completions man -o --output --bpffs-root -h --help --version" -- "$cur")) ;;
        "netfence ebpf") COMPREPLY=($(compgen -W "progs maps -o --output --bpffs-root -h --help" -- "$cur")) ;;
        "netfence ebpf progs") COMPREPLY=($(compgen -W "-o --output --bpffs-root --all --stats --stats-window -h --help" -- "$cur")) ;;
        "netfence ebpf maps") COMPREPLY=($(compgen -W "-o --output --bpffs-root --all -h --help" -- "$cur")) ;;
        "netfence loader") COMPREPLY=($(compgen -W "init status -o --output --bpffs-root -h --help" -- "$cur")) ;;
        "netfence loader init") COMPREPLY=($(compgen -W "-o --output --bpffs-root --migrate -h --help" -- "$cur")) ;;
        "netfence loader status") COMPREPLY=($(compgen -W "-o --output --bpffs-root -h --help" -- "$cur")) ;;
        "netfence bench") COMPREPLY=($(compgen -W "datapath -o --output --bpffs-root -h --help" -- "$cur")) ;;
        "netfence bench datapath") COMPREPLY=($(compgen -W "-o --output --bpffs-root --passes -h --help" -- "$cur")) ;;
        "netfence demo") COMPREPLY=($(compgen -W "-o --output --bpffs-root --keep -h --help" -- "$cur")) ;;
        "netfence completions") COMPREPLY=($(compgen -W "-o --output --bpffs-root -h --help" -- "$cur")) ;;
        "netfence man") COMPREPLY=($(compgen -W "-o --output --bpffs-root -h --help" -- "$cur")) ;;
    esac
}
complete -F _netfence netfence
