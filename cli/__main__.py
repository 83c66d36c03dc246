from vqcpc.cli import main

main()
