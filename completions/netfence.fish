# fish completion for netfence. Generated from the command tree by
# 'netfence completions fish'; do not edit.
function __netfence_path
    set -l path netfence
    set -l skip 0
    for word in (commandline -opc)[2..-1]
        if test $skip -eq 1
            set skip 0
            continue
        end
        switch $word
            case '-o' '--output' '--bpffs-root' '--stats-window' '--passes'
                set skip 1
                continue
        end
        switch "$path $word"
            case 'netfence ebpf'
                set path 'netfence ebpf'
            case 'netfence ebpf progs' 'netfence ebpf p'
                set path 'netfence ebpf progs'
            case 'netfence ebpf maps' 'netfence ebpf m'
                set path 'netfence ebpf maps'
            case 'netfence loader'
                set path 'netfence loader'
            case 'netfence loader init'
                set path 'netfence loader init'
            case 'netfence loader status'
                set path 'netfence loader status'
            case 'netfence bench'
                set path 'netfence bench'
            case 'netfence bench datapath'
                set path 'netfence bench datapath'
            case 'netfence demo'
                set path 'netfence demo'
            case 'netfence completions'
                set path 'netfence completions'
            case 'netfence man'
                set path 'netfence man'
        end
    end
    echo $path
end

complete -c netfence -f
complete -c netfence -n 'test (__netfence_path) = "netfence"' -a ebpf -d 'Inspect the eBPF programs and maps on this node.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -a loader -d 'Load the datapath and report its state (what a node agent runs).'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -a bench -d 'Measure netfence on this machine, each figure beside its baseline from the same run.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -a demo -d 'Run a throwaway pod with a counting tc program, show it with \'ebpf progs\' and \'ebpf maps\', clean up.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -a completions -d 'Print the completion script for bash, zsh or fish.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -a man -d 'Print the man page (roff); view it with \'netfence man | man -l -\'.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence"' -l version -d 'Show the version.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf"' -a progs -d 'List eBPF programs: type, name, tag, load time, maps and attachments.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf"' -a maps -d 'List eBPF maps: type, sizes, entries and fill, pins and the programs using them.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf progs"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf progs"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf progs"' -l all -d 'List every program on the host, not only netfence\'s.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf progs"' -l stats -d 'Add run count and average ns per run.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf progs"' -l stats-window -x -d 'How long --stats counts runs before printing.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf progs"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf maps"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf maps"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf maps"' -l all -d 'List every map on the host, not only netfence\'s.'
complete -c netfence -n 'test (__netfence_path) = "netfence ebpf maps"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader"' -a init -d 'Mount bpffs if needed, load the datapath once and pin its maps and programs.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader"' -a status -d 'Show the loaded datapath: programs, global map fill, registered pods.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader init"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader init"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader init"' -l migrate -d 'Replace pinned maps that do not match this netfence (their entries are lost).'
complete -c netfence -n 'test (__netfence_path) = "netfence loader init"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader status"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader status"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence loader status"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench"' -a datapath -d 'ns per packet through BPF_PROG_TEST_RUN: established, new allowed and new denied flows.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench datapath"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench datapath"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench datapath"' -l passes -x -d 'Passes per case; the minimum of their medians is reported.'
complete -c netfence -n 'test (__netfence_path) = "netfence bench datapath"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence demo"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence demo"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence demo"' -l keep -d 'Leave the namespaces, filters and pins in place for a look around.'
complete -c netfence -n 'test (__netfence_path) = "netfence demo"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence completions"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence completions"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence completions"' -s h -l help -d 'Show help information.'
complete -c netfence -n 'test (__netfence_path) = "netfence man"' -s o -l output -x -a 'table json' -d 'Output format: table for people, json for scripts.'
complete -c netfence -n 'test (__netfence_path) = "netfence man"' -l bpffs-root -x -a '(__fish_complete_directories)' -d 'The bpffs folder netfence pins its programs and maps under.'
complete -c netfence -n 'test (__netfence_path) = "netfence man"' -s h -l help -d 'Show help information.'
