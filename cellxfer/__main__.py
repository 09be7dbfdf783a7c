from cellxfer.cli import main

main()
