"""Source IDB: the contact-center database schema the project defines, and its traffic
generator."""
