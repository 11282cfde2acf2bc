# bash completion for netfence. Generated from the command tree by
# 'netfence completions bash'; do not edit.
_netfence() {
    local cur="${COMP_WORDS[COMP_CWORD]}" prev="${COMP_WORDS[COMP_CWORD-1]}"
    local path="netfence" i
    for ((i = 1; i < COMP_CWORD; i++)); do
        case "${COMP_WORDS[i]}" in
            -o|--output|--bpffs-root|--format|--stats-window|--aws-root|--pod|--direction|--count|--namespace|--verdict|--ip|--port|--proto|--tier|--policy|--color|--pcap|--output-file|--max-size|--max-files|--fields|--rate|--node-rate|--snaplen|--conntrack-entries|--attach|--wait-timeout|--iface|--netns|--ingress-default|--egress-default|-f|--filename|--probe|--timeout|--socket|--peer|--peer-port|--state|--listen|--upstream|--min-ttl|--max-ttl|--refuse-with|--event-loops|--queries-per-socket|--passes|--pods|--events|--entries|--seconds|--outstanding|--prefixes|--samples|--cidrs|--rounds|--side-by-side-seconds|--side-by-side-rounds) ((i++)); continue ;;
        esac
        case "$path ${COMP_WORDS[i]}" in
            "netfence ebpf") path="netfence ebpf" ;;
            "netfence ebpf progs"|"netfence ebpf p") path="netfence ebpf progs" ;;
            "netfence ebpf maps"|"netfence ebpf m") path="netfence ebpf maps" ;;
            "netfence ebpf maps dump") path="netfence ebpf maps dump" ;;
            "netfence ebpf events") path="netfence ebpf events" ;;
            "netfence ebpf events level") path="netfence ebpf events level" ;;
            "netfence ebpf events capture") path="netfence ebpf events capture" ;;
            "netfence ebpf dump-maps"|"netfence ebpf d") path="netfence ebpf dump-maps" ;;
            "netfence ebpf dump-cp-maps"|"netfence ebpf dcp") path="netfence ebpf dump-cp-maps" ;;
            "netfence ebpf loaded-ebpfdata"|"netfence ebpf e") path="netfence ebpf loaded-ebpfdata" ;;
            "netfence loader") path="netfence loader" ;;
            "netfence loader init") path="netfence loader init" ;;
            "netfence loader attach") path="netfence loader attach" ;;
            "netfence loader apply") path="netfence loader apply" ;;
            "netfence loader delete") path="netfence loader delete" ;;
            "netfence loader detach") path="netfence loader detach" ;;
            "netfence loader status") path="netfence loader status" ;;
            "netfence loader reconcile") path="netfence loader reconcile" ;;
            "netfence loader reset") path="netfence loader reset" ;;
            "netfence loader serve") path="netfence loader serve" ;;
            "netfence policy") path="netfence policy" ;;
            "netfence policy explain") path="netfence policy explain" ;;
            "netfence policy show") path="netfence policy show" ;;
            "netfence conntrack") path="netfence conntrack" ;;
            "netfence conntrack list"|"netfence conntrack ls") path="netfence conntrack list" ;;
            "netfence conntrack flush") path="netfence conntrack flush" ;;
            "netfence conntrack stats") path="netfence conntrack stats" ;;
            "netfence dns") path="netfence dns" ;;
            "netfence dns proxy") path="netfence dns proxy" ;;
            "netfence fqdn") path="netfence fqdn" ;;
            "netfence fqdn list") path="netfence fqdn list" ;;
            "netfence metrics") path="netfence metrics" ;;
            "netfence bench") path="netfence bench" ;;
            "netfence bench datapath") path="netfence bench datapath" ;;
            "netfence bench loader") path="netfence bench loader" ;;
            "netfence bench events") path="netfence bench events" ;;
            "netfence bench conntrack") path="netfence bench conntrack" ;;
            "netfence bench dns") path="netfence bench dns" ;;
            "netfence bench explain") path="netfence bench explain" ;;
            "netfence bench cni") path="netfence bench cni" ;;
            "netfence bench cli") path="netfence bench cli" ;;
            "netfence bench scale") path="netfence bench scale" ;;
            "netfence bench traffic") path="netfence bench traffic" ;;
            "netfence demo") path="netfence demo" ;;
            "netfence completions") path="netfence completions" ;;
            "netfence man") path="netfence man" ;;
        esac
    done
    case "$prev" in
        -o|--output) COMPREPLY=($(compgen -W "table json" -- "$cur")); return ;;
        --bpffs-root) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --format) COMPREPLY=($(compgen -W "aws-eks-na-cli aws-eks-na-cli-v6" -- "$cur")); return ;;
        --stats-window) COMPREPLY=(); return ;;
        --aws-root) COMPREPLY=($(compgen -d -- "$cur")); return ;;
        --pod) COMPREPLY=(); return ;;
        --direction) COMPREPLY=($(compgen -W "ingress egress" -- "$cur")); return ;;
        --count) COMPREPLY=(); return ;;
        --namespace) COMPREPLY=(); return ;;
        --verdict) COMPREPLY=($(compgen -W "deny allow audit" -- "$cur")); return ;;
        --ip) COMPREPLY=(); return ;;
        --port) COMPREPLY=(); return ;;
        --proto) COMPREPLY=(); return ;;
        --tier) COMPREPLY=($(compgen -W "none admin network-policy baseline default" -- "$cur")); return ;;
        --policy) COMPREPLY=(); return ;;
        --color) COMPREPLY=($(compgen -W "auto always never" -- "$cur")); return ;;
        --pcap) COMPREPLY=(); return ;;
        --output-file) COMPREPLY=(); return ;;
        --max-size) COMPREPLY=(); return ;;
        --max-files) COMPREPLY=(); return ;;
        --fields) COMPREPLY=(); return ;;
        --rate) COMPREPLY=(); return ;;
        --node-rate) COMPREPLY=(); return ;;
        --snaplen) COMPREPLY=(); return ;;
        --conntrack-entries) COMPREPLY=(); return ;;
        --attach) COMPREPLY=($(compgen -W "tc tcx" -- "$cur")); return ;;
        --wait-timeout) COMPREPLY=(); return ;;
        --iface) COMPREPLY=(); return ;;
        --netns) COMPREPLY=(); return ;;
        --ingress-default) COMPREPLY=($(compgen -W "allow deny" -- "$cur")); return ;;
        --egress-default) COMPREPLY=($(compgen -W "allow deny" -- "$cur")); return ;;
        -f|--filename) COMPREPLY=($(compgen -f -- "$cur")); return ;;
        --probe) COMPREPLY=(); return ;;
        --timeout) COMPREPLY=(); return ;;
        --socket) COMPREPLY=(); return ;;
        --peer) COMPREPLY=(); return ;;
        --peer-port) COMPREPLY=(); return ;;
        --state) COMPREPLY=($(compgen -W "current stale orphan" -- "$cur")); return ;;
        --listen) COMPREPLY=(); return ;;
        --upstream) COMPREPLY=(); return ;;
        --min-ttl) COMPREPLY=(); return ;;
        --max-ttl) COMPREPLY=(); return ;;
        --refuse-with) COMPREPLY=($(compgen -W "refused nxdomain forward" -- "$cur")); return ;;
        --event-loops) COMPREPLY=(); return ;;
        --queries-per-socket) COMPREPLY=(); return ;;
        --passes) COMPREPLY=(); return ;;
        --pods) COMPREPLY=(); return ;;
        --events) COMPREPLY=(); return ;;
        --entries) COMPREPLY=(); return ;;
        --seconds) COMPREPLY=(); return ;;
        --outstanding) COMPREPLY=(); return ;;
        --prefixes) COMPREPLY=(); return ;;
        --samples) COMPREPLY=(); return ;;
        --cidrs) COMPREPLY=(); return ;;
        --rounds) COMPREPLY=(); return ;;
        --side-by-side-seconds) COMPREPLY=(); return ;;
        --side-by-side-rounds) COMPREPLY=(); return ;;
    esac
    case "$path" in
        "netfence") COMPREPLY=($(compgen -W "ebpf loader policy conntrack dns fqdn metrics bench demo completions man -o --output --bpffs-root --format -h --help --version" -- "$cur")) ;;
        "netfence ebpf") COMPREPLY=($(compgen -W "progs maps events dump-maps dump-cp-maps loaded-ebpfdata -o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence ebpf progs") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --all --stats --stats-window --aws-root -h --help" -- "$cur")) ;;
        "netfence ebpf maps") COMPREPLY=($(compgen -W "dump -o --output --bpffs-root --format --all --aws-root -h --help" -- "$cur")) ;;
        "netfence ebpf maps dump") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --direction --raw --numeric --per-cpu --no-headers --aws-root -h --help" -- "$cur")) ;;
        "netfence ebpf events") COMPREPLY=($(compgen -W "level capture -o --output --bpffs-root --format -f --follow --count --pod --namespace --verdict --direction --ip --port --proto --tier --policy --color --no-headers --pcap --output-file --max-size --max-files --fields --aws --aws-root -h --help" -- "$cur")) ;;
        "netfence ebpf events level") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --rate --node-rate -h --help" -- "$cur")) ;;
        "netfence ebpf events capture") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --snaplen --verdict -h --help" -- "$cur")) ;;
        "netfence ebpf dump-maps") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --direction --raw --numeric --per-cpu --no-headers --aws-root -h --help" -- "$cur")) ;;
        "netfence ebpf dump-cp-maps") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --direction --raw --numeric --per-cpu --no-headers --aws-root -h --help" -- "$cur")) ;;
        "netfence ebpf loaded-ebpfdata") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --aws-root -h --help" -- "$cur")) ;;
        "netfence loader") COMPREPLY=($(compgen -W "init attach apply delete detach status reconcile reset serve -o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence loader init") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --migrate --conntrack-entries --attach --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader attach") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --iface --netns --ingress-default --egress-default --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader apply") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format -f --filename --dry-run --probe --audit --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader delete") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format -f --filename --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader detach") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader status") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --check --pod --wait-applied --timeout --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader reconcile") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader reset") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --wait-timeout -h --help" -- "$cur")) ;;
        "netfence loader serve") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --socket -h --help" -- "$cur")) ;;
        "netfence policy") COMPREPLY=($(compgen -W "explain show -o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence policy explain") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --direction --peer --proto --port --peer-port --aws --aws-root -h --help" -- "$cur")) ;;
        "netfence policy show") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod -h --help" -- "$cur")) ;;
        "netfence conntrack") COMPREPLY=($(compgen -W "list flush stats -o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence conntrack list") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --ip --port --proto --state --aws --aws-root --numeric --no-headers -h --help" -- "$cur")) ;;
        "netfence conntrack flush") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod --ip --port --proto --state --aws --aws-root --yes-change-the-agent -h --help" -- "$cur")) ;;
        "netfence conntrack stats") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --aws --aws-root -h --help" -- "$cur")) ;;
        "netfence dns") COMPREPLY=($(compgen -W "proxy -o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence dns proxy") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --listen --upstream --min-ttl --max-ttl --refuse-with --no-case-randomization --event-loops --queries-per-socket --wait-timeout -h --help" -- "$cur")) ;;
        "netfence fqdn") COMPREPLY=($(compgen -W "list -o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence fqdn list") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pod -h --help" -- "$cur")) ;;
        "netfence metrics") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --serve --listen -h --help" -- "$cur")) ;;
        "netfence bench") COMPREPLY=($(compgen -W "datapath loader events conntrack dns explain cni cli scale traffic -o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence bench datapath") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --passes -h --help" -- "$cur")) ;;
        "netfence bench loader") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pods -h --help" -- "$cur")) ;;
        "netfence bench events") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --events -h --help" -- "$cur")) ;;
        "netfence bench conntrack") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --entries --passes -h --help" -- "$cur")) ;;
        "netfence bench dns") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --seconds --passes --outstanding -h --help" -- "$cur")) ;;
        "netfence bench explain") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --prefixes -h --help" -- "$cur")) ;;
        "netfence bench cni") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --samples -h --help" -- "$cur")) ;;
        "netfence bench cli") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --samples -h --help" -- "$cur")) ;;
        "netfence bench scale") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --pods --cidrs --rounds -h --help" -- "$cur")) ;;
        "netfence bench traffic") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --seconds --rounds --side-by-side-seconds --side-by-side-rounds -h --help" -- "$cur")) ;;
        "netfence demo") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format --keep -h --help" -- "$cur")) ;;
        "netfence completions") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format -h --help" -- "$cur")) ;;
        "netfence man") COMPREPLY=($(compgen -W "-o --output --bpffs-root --format -h --help" -- "$cur")) ;;
    esac
}
complete -F _netfence netfence
