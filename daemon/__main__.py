from vqcpc.daemon.cli import main

main()
